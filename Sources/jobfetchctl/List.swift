import ArgumentParser
import Glibc
import JobFetchCore
import JobFetchStore

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs with their state and progress.")

    @OptionGroup var options: GlobalOptions

    @Option(help: "Only jobs of this kind.")
    var kind: String?

    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).")
    var state: String?

    @Flag(help: "Print a JSON array (the format is documented in the README).")
    var json = false

    @Flag(help: "Refresh the table in place every --interval until interrupted.")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 1

    func validate() throws {
        if watch && json { throw ValidationError("--watch shows the table; use --json without it") }
        guard interval >= 0.1, interval <= 86400 else { throw ValidationError("--interval must be from 0.1 to 86400 (seconds)") }
        if let state, JobState(rawValue: state) == nil {
            throw ValidationError("unknown state \"\(state)\"; states are \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let config = try options.load()
        let colour = isatty(1) == 1 && getenv("NO_COLOR") == nil
        let filter = state.flatMap(JobState.init(rawValue:))
        guard watch else {
            let records = try options.openStore(config)?.list(kind: kind, state: filter) ?? []
            if json {
                print(JSONWriter.string(.array(records.map { JobReport.json($0, outputDir: config.daemon.outputDir) }), pretty: true))
            } else {
                print(records.isEmpty ? "no jobs" : JobReport.table(records, now: SystemClock.now(), colour: colour))
            }
            return
        }
        // A live view: redraw in place (cursor home, clear) until Ctrl-C.
        while true {
            let records = try options.openStore(config)?.list(kind: kind, state: filter) ?? []
            let table = records.isEmpty ? "no jobs" : JobReport.table(records, now: SystemClock.now(), colour: colour)
            let header = "jobfetchctl list --watch: \(records.count) job(s), every \(Units.formatDuration(interval)); Ctrl-C to quit"
            print((colour ? "\u{1B}[H\u{1B}[2J" : "\n") + header + "\n\n" + table)
            fflush(nil)  // all output streams: stdout without touching the global
            // The refresh period of a display, not a wait for an event.
            var left = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
            var rest = timespec()
            while nanosleep(&left, &rest) != 0 && errno == EINTR { left = rest }
        }
    }
}
