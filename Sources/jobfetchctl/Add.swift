import ArgumentParser
import JobFetchCore
import JobFetchStore

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register jobs: writes them to the spool, whether or not the daemon runs.")

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The kind: a [kind NAME] section of the config.")
    var kind: String

    @Argument(help: "Job IDs: 1 to 200 of A-Z a-z 0-9 . _ : -, not starting with '.'; or - to read them from standard input, one per line (blank lines and # comments are skipped).")
    var ids: [String]

    var fromStandardInput: Bool { ids == ["-"] }

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one job ID, or - to read them from standard input") }
        guard !fromStandardInput else { return }
        let problems = ids.compactMap(JobID.problem(with:))
        if !problems.isEmpty {
            throw ValidationError(problems.joined(separator: "\n") + "\nnothing was registered")
        }
    }

    /// The IDs on standard input, checked like a spool file's lines: every bad line is named, and then nothing is registered.
    func readStandardInput() throws -> [JobID] {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(fd: 0, path: "standard input", limit: SpoolFile.maxSize) } catch {
            throw ValidationError("cannot read the IDs from standard input: \(error) (at most \(SpoolFile.maxSize >> 20) MiB); nothing was registered")
        }
        guard !bytes.isEmpty else { throw ValidationError("standard input held no job IDs; nothing was registered") }
        let contents = SpoolFile.parse(name: "-", bytes: bytes)
        guard contents.problems.isEmpty else {
            let shown = contents.problems.prefix(20).map { "standard input \($0)" }
            let more = contents.problems.count > 20 ? ["… and \(contents.problems.count - 20) more bad line(s)"] : []
            throw ValidationError((shown + more).joined(separator: "\n") + "\nnothing was registered")
        }
        return contents.ids
    }

    func run() throws {
        let config = try options.load()
        try options.checkKind(kind, in: config, consequence: "; nothing was registered")
        var unique: [JobID] = []
        if fromStandardInput {
            // One spool file, which the daemon registers in one transaction.
            unique = try readStandardInput()
        } else {
            for text in ids {
                let id = try JobID(text)
                if !unique.contains(id) { unique.append(id) }
            }
        }
        do {
            let file = try SpoolWriter.submit(unique, kind: kind, spool: config.daemon.spoolDir)
            print("queued \(unique.count) job(s) of kind \(kind) in \(file)")
        } catch {
            throw ValidationError("cannot write to the spool: \(error); nothing was registered")
        }
    }
}
