import ArgumentParser
import JobFetchCore
import JobFetchStore

@main
struct JobFetchCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobfetchctl",
        abstract: "Register and inspect jobfetchd's jobs.",
        version: Version.string,
        subcommands: [Add.self, List.self, Status.self, Wait.self, History.self, Cancel.self, Retry.self]
    )

    /// SPEC.md writes `jobfetchctl [--config PATH] SUBCOMMAND ...`; the option
    /// belongs to each subcommand, so one given first is moved after the
    /// subcommand name before parsing.
    static func main() {
        main(normalized(Array(CommandLine.arguments.dropFirst())))
    }

    static func normalized(_ args: [String]) -> [String] {
        var args = args
        var moved: [String] = []
        if args.first == "--config", args.count >= 2 {
            moved = Array(args[0...1])
            args.removeFirst(2)
        } else if let first = args.first, first.hasPrefix("--config=") {
            moved = [first]
            args.removeFirst()
        }
        guard !moved.isEmpty, !args.isEmpty else { return moved + args }
        return [args[0]] + moved + args.dropFirst()
    }
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: $JOBFETCH_CONFIG, else /etc/jobfetchd/daemon.conf).")
    var config: String?

    func load() throws -> Config {
        let path = ConfigLocation.resolve(config)
        do {
            // ctl needs the directories and kinds, never the secrets (it runs
            // outside the service, without its credentials).
            return try ConfigParser.load(path: path, secrets: .syntaxOnly)
        } catch {
            throw ValidationError("the config file has problems:\n" + error.description)
        }
    }

    /// Refuses a kind that is no `[kind]` section of the config; `consequence` ends the message.
    func checkKind(_ kind: String, in config: Config, consequence: String = "") throws {
        guard config.kind(kind) == nil else { return }
        throw ValidationError("unknown kind \"\(kind)\" (the config defines: \(config.kinds.map(\.name).joined(separator: ", ")))" + consequence)
    }

    /// The store, read-only; nil when the daemon has never run (or is creating it right now).
    func openStore(_ config: Config) throws -> (any JobStoring)? {
        do {
            return try config.daemon.openStore(readOnly: true)
        } catch {
            throw ValidationError(config.daemon.store.isShared ? "cannot read the shared store: \(error)" : "cannot read the state database: \(error)")
        }
    }
}
