import ArgumentParser
import Glibc
import JobFetch
import Logging

@main
struct JobFetchDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobfetchd",
        abstract: "Polls registered jobs on remote APIs and publishes their results.",
        discussion: "Runs in the foreground and logs to stderr. SIGTERM or SIGINT stop it cleanly; SIGHUP reloads the config.",
        version: Version.string
    )

    @Option(name: .long, help: "Config file (default: $JOBFETCH_CONFIG, else /etc/jobfetchd/daemon.conf).")
    var config: String?

    @Flag(name: .long, help: "Check the config file, print every problem with its line, and exit.")
    var checkConfig = false

    func run() throws {
        // Before any thread exists, so every thread inherits the mask and
        // the signals arrive only through the engine's signalfd.
        SignalFD.blockSignals()
        let path = ConfigLocation.resolve(config)
        let loaded: Config
        do {
            loaded = try ConfigParser.load(path: path)
        } catch {
            for p in error.problems { printError(p.description) }
            printError("\(error.problems.count) problem(s) in \(path)")
            throw ExitCode(1)
        }
        if checkConfig {
            print("\(path): OK (\(loaded.kinds.count) kind(s): \(loaded.kinds.map(\.name).joined(separator: ", ")))")
            return
        }
        LineLogHandler.bootstrap(level: loaded.daemon.logLevel)
        let logger = Logger(label: "jobfetchd")
        let engine: Engine
        do {
            engine = try Engine(config: loaded, configPath: path, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        let status = engine.run()
        if status != 0 { throw ExitCode(status) }
    }
}

func printError(_ s: String) {
    var line = Array((s + "\n").utf8)
    line.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
