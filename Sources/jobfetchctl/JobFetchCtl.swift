import ArgumentParser
import JobFetch

@main
struct JobFetchCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobfetchctl",
        abstract: "Register and inspect jobfetchd's jobs.",
        version: Version.string,
        subcommands: [Add.self, List.self, Status.self]
    )
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: $JOBFETCH_CONFIG, else /etc/jobfetchd/daemon.conf).")
    var config: String?

    func load() throws -> Config {
        let path = ConfigLocation.resolve(config)
        do {
            return try ConfigParser.load(path: path)
        } catch {
            throw ValidationError("the config file has problems:\n" + error.description)
        }
    }

    /// The store, read-only; nil when the daemon has never run.
    func openStore(_ config: Config) throws -> JobStore? {
        let path = config.daemon.databasePath
        guard FileIO.exists(path) else { return nil }
        do { return try JobStore(path: path, readOnly: true) } catch {
            throw ValidationError("cannot read the state database: \(error)")
        }
    }
}
