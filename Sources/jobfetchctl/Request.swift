import ArgumentParser
import JobFetchCore
import JobFetchStore

struct Cancel: RequestCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cancel a job: stops its polling or download and publishes it as cancelled.")
    static let request = SpoolRequest.cancel
    @OptionGroup var job: JobArguments
}

struct Retry: RequestCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retry a failed or cancelled job: it is polled again and its new result replaces the old one.")
    static let request = SpoolRequest.retry
    @OptionGroup var job: JobArguments
}

/// The config option and the job a request is about.
struct JobArguments: ParsableArguments {
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The job's kind.") var kind: String
    @Argument(help: "The job's ID.") var id: String

    func validate() throws { if let p = JobID.problem(with: id) { throw ValidationError(p) } }

    /// The job (the ID was checked by `validate`).
    func key() throws -> JobKey { JobKey(kind: kind, id: try JobID(id)) }

    /// The store and the job's record; an error naming the job when it is not registered.
    func registered(_ config: Config) throws -> (store: any JobStoring, record: JobRecord) {
        let key = try key()
        guard let store = try options.openStore(config), let r = try store.job(key) else {
            throw ValidationError("no job \(key) is registered (a job added moments ago appears once the daemon has taken it from the spool)")
        }
        return (store, r)
    }
}

/// What `cancel` and `retry` share: the arguments and the request's path.
protocol RequestCommand: ParsableCommand {
    static var request: SpoolRequest { get }
    var job: JobArguments { get }
}

extension RequestCommand {
    func run() throws { try OperatorRequest.submit(Self.request, kind: job.kind, id: job.id, options: job.options) }
}

/// Cancel and retry travel through the spool, like registrations: the
/// daemon is the only writer of its database. When a daemon runs, this
/// waits for it to take the request and prints what happened.
enum OperatorRequest {
    static let answerTimeout = 10.0

    static func submit(_ request: SpoolRequest, kind: String, id text: String, options: GlobalOptions) throws {
        let config = try options.load()
        try options.checkKind(kind, in: config, consequence: "; nothing was requested")
        let key = JobKey(kind: kind, id: try JobID(text))
        let spool = config.daemon.spoolDir
        let file: String
        do { file = try SpoolWriter.submit([key.id], kind: kind, request: request, spool: spool) } catch {
            throw ValidationError("cannot write to the spool: \(error); nothing was requested")
        }
        guard StateLock.isHeld(stateDir: config.daemon.stateDir) else {
            print("queued: jobfetchd is not running; the \(request.rawValue) request for \(key) (\(file)) is carried out when it starts")
            return
        }
        let dir = FileIO.parent(file), name = FileIO.basename(file)
        guard (try? Inotify.wait(forRemovalOf: name, in: dir, timeout: answerTimeout)) == true else {
            print("queued: the daemon has not taken the \(request.rawValue) request for \(key) (\(file)) yet")
            return
        }
        let rejected = "\(spool)/.rejected/\(request.rawValue).\(kind).\(name)"
        if let why = try? FileIO.readAll(rejected + ".reason") {
            // The reason file: a header line, then one line per refused request.
            let lines = String(decoding: why, as: UTF8.self).split(separator: "\n").dropFirst()
            print("\(request.rawValue) refused: " + (lines.first.map { ServerText.escaped(String($0)) } ?? "see \(rejected).reason"))
            throw ExitCode(1)
        }
        guard let store = try options.openStore(config), let r = try store.job(key) else {
            print("\(request.rawValue) for \(key) taken by the daemon")
            return
        }
        let recent = try store.events(key, limit: 5).map(\.message)
        let detail = request == .cancel && r.state == .cancelled ? r.reason : recent.last(where: { $0.contains("requested") }) ?? recent.last
        print("\(key): \(r.state.rawValue)" + (detail.map { " (\(ServerText.escaped($0)))" } ?? ""))
    }
}
