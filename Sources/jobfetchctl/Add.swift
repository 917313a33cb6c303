import ArgumentParser
import JobFetchCore
import JobFetchStore

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register jobs: writes them to the spool, whether or not the daemon runs.")

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The kind: a [kind NAME] section of the config.")
    var kind: String

    @Argument(help: "Job IDs: 1 to 200 of A-Z a-z 0-9 . _ : -, not starting with '.'.")
    var ids: [String]

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one job ID") }
        let problems = ids.compactMap(JobID.problem(with:))
        if !problems.isEmpty {
            throw ValidationError(problems.joined(separator: "\n") + "\nnothing was registered")
        }
    }

    func run() throws {
        let config = try options.load()
        guard config.kind(kind) != nil else {
            let known = config.kinds.map(\.name).joined(separator: ", ")
            throw ValidationError("unknown kind \"\(kind)\" (the config defines: \(known)); nothing was registered")
        }
        var unique: [JobID] = []
        for text in ids {
            let id = try JobID(text)
            if !unique.contains(id) { unique.append(id) }
        }
        do {
            let file = try SpoolWriter.submit(unique, kind: kind, spool: config.daemon.spoolDir)
            print("queued \(unique.count) job(s) of kind \(kind) in \(file)")
        } catch {
            throw ValidationError("cannot write to the spool: \(error); nothing was registered")
        }
    }
}
