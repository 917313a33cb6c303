import ArgumentParser
import JobFetchCore
import JobFetchStore

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a job's history with times: state changes, HTTP answers that mattered, retries, on_complete and webhook runs.")

    @OptionGroup var job: JobArguments

    @Flag(help: "Print a JSON array of {\"at\", \"event\"}.")
    var json = false

    func run() throws {
        let (store, r) = try job.registered(try job.options.load())
        let events = try store.events(r.key, limit: JobStore.maxEventsPerJob)
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
