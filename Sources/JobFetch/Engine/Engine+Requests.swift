import Logging

/// The operator's requests, as they arrive through the spool
/// (`.cancel/<kind>/`, `.retry/<kind>/`): the daemon stays the only writer
/// of its database.
extension Engine {
    /// Carries out one request; returns why it cannot be (the spool file is
    /// then rejected with that reason), or nil. A request that finds the job
    /// already where it asks for is not an error: it is logged and recorded.
    func apply(_ request: SpoolRequest, _ key: JobKey) -> String? {
        let now = Clock.now()
        let found: JobRecord?
        do { found = try store.job(key) } catch { return "cannot read the job from the store: \(error)" }
        guard var r = found else { return "not registered" }
        let log = Logger.job(key)
        switch request {
        case .register:
            return nil
        case .cancel:
            guard !r.state.isTerminal && r.state != .publishing else {
                let note = "cancel requested, but the job is already \(r.state == .publishing ? "finishing" : r.state.rawValue); nothing to cancel"
                logger.notice("\(note)", metadata: log)
                r.updatedAt = now
                save(r, event: note)
                return nil
            }
            let stopped = abortInFlight(key)
            r.updatedAt = now
            r.reason = "cancelled by the operator while \(r.state.rawValue)" + (stopped.map { " (\(Self.describe($0)) stopped)" } ?? "")
            complete(&r, .cancelled, now: now)
            return nil
        case .retry:
            guard r.state == .failed || r.state == .cancelled else {
                let note = "retry requested, but the job is \(r.state.rawValue); only failed or cancelled jobs are retried"
                logger.notice("\(note)", metadata: log)
                r.updatedAt = now
                save(r, event: note)
                return nil
            }
            let was = r.state
            r.state = .registered
            r.retries += 1
            r.timeoutFrom = now
            r.updatedAt = now
            r.nextAt = now
            r.attempts = 0
            r.polls = 0
            r.reason = nil
            r.outcome = nil
            r.warnings = []
            r.summary = nil
            r.resultURL = nil
            r.pageNext = nil
            r.notFoundSince = nil
            r.progress = nil
            r.bytesDone = 0
            r.bytesTotal = nil
            r.finishedAt = nil
            r.lastError = nil
            logger.notice("retry \(r.retries) requested by the operator (was \(was.rawValue)); polling again, the old result stays until the new one replaces it", metadata: log)
            save(r, event: "retry \(r.retries) requested (was \(was.rawValue))")
            return nil
        }
    }

    static func describe(_ p: Purpose) -> String {
        switch p {
        case .poll: return "status request"
        case .page: return "page request"
        case .fetch(_, let url, _): return "download of \(url.redacted)"
        }
    }
}
