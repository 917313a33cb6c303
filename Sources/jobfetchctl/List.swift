import ArgumentParser
import JobFetch

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs with their state and progress.")

    @OptionGroup var options: GlobalOptions

    @Option(help: "Only jobs of this kind.")
    var kind: String?

    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).")
    var state: String?

    @Flag(help: "Print a JSON array (the format is documented in the README).")
    var json = false

    func validate() throws {
        if let state, JobState(rawValue: state) == nil {
            throw ValidationError("unknown state \"\(state)\"; states are \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let config = try options.load()
        let records = try options.openStore(config)?.list(kind: kind, state: state.flatMap(JobState.init(rawValue:))) ?? []
        if json {
            print(JSONWriter.string(.array(records.map { JobReport.json($0, outputDir: config.daemon.outputDir) }), pretty: true))
        } else if records.isEmpty {
            print("no jobs")
        } else {
            print(JobReport.table(records, now: Clock.now()))
        }
    }
}
