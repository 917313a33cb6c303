import ArgumentParser
import Glibc
import JobFetchCore
import JobFetchEngine
import JobFetchStore
import Logging
import ServiceLifecycle
import UnixSignals

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
        // Before any secret is read: no core file, no ptrace by other users.
        ProcessHardening.forbidCoreDumps()
        let path = ConfigLocation.resolve(config)
        if checkConfig {
            let loaded = try Self.load(path)
            for w in loaded.warnings { printError("warning: \(w)") }
            print("\(path): OK (\(loaded.kinds.count) kind(s): \(loaded.kinds.map(\.name).joined(separator: ", ")))" +
                  (loaded.warnings.isEmpty ? "" : ", \(loaded.warnings.count) warning(s)"))
            return
        }
        // SIGHUP is listened for before the config is read: one that comes
        // later is queued and reloads once the engine runs, one that came
        // earlier is moot (the file is read after it).
        Signals.prepare()
        let hangups = try GroupRunner.block { await UnixSignalsSequence(trapping: .sighup) }
        let loaded = try Self.load(path)
        LineLogHandler.bootstrap(level: loaded.daemon.logLevel)
        let logger = Logger(label: "jobfetchd")
        for w in loaded.warnings { logger.warning("\(w)") }
        let engine: Engine
        do {
            engine = try Engine(config: loaded, configPath: path, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        // The engine first, so a graceful shutdown stops the reload listener
        // and then the engine (the group stops services in reverse order).
        // The engine returning for any reason ends the whole group.
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: EngineService(engine: engine),
                      successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: ReloadService(hangups: hangups, control: engine.control)),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do { try GroupRunner.block { try await group.run() } } catch {
            logger.critical("stopped by an error: \(error)")
            throw ExitCode(1)
        }
    }
}

extension JobFetchDaemon {
    /// The config, or every problem in it on stderr and exit status 1.
    static func load(_ path: String) throws -> Config {
        do {
            return try ConfigParser.load(path: path)
        } catch {
            for p in error.problems { printError(p.description) }
            printError("\(error.problems.count) problem(s) in \(path)")
            throw ExitCode(1)
        }
    }
}

func printError(_ s: String) {
    var line = Array((s + "\n").utf8)
    line.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
