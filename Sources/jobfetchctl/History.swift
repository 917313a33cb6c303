import ArgumentParser
import JobFetchCore
import JobFetchStore

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a job's history with times: state changes, HTTP answers that mattered, retries.")

    @OptionGroup var options: GlobalOptions

    @Argument var kind: String
    @Argument var id: String

    @Flag(help: "Print a JSON array of {\"at\", \"event\"}.")
    var json = false

    func validate() throws {
        if let problem = JobID.problem(with: id) { throw ValidationError(problem) }
    }

    func run() throws {
        let config = try options.load()
        let key = JobKey(kind: kind, id: try JobID(id))
        guard let store = try options.openStore(config), try store.job(key) != nil else {
            throw ValidationError("no job \(key) is registered (a job added moments ago appears once the daemon has taken it from the spool)")
        }
        let events = try store.events(key, limit: JobStore.maxEventsPerJob)
        if json {
            print(JSONWriter.string(Self.json(events), pretty: true))
        } else {
            // History lines quote servers: each is escaped so none can add lines or drive the terminal.
            for e in events { print(ServerText.escaped("\(Timestamp.iso8601(e.at))  \(e.message)")) }
        }
    }

    static func json(_ events: [(at: Double, message: String)]) -> JSONValue {
        .array(events.map { .object([JSONMember("at", .string(Timestamp.iso8601($0.at))), JSONMember("event", .string($0.message))]) })
    }
}
