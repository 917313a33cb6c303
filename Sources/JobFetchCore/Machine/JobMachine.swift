import Logging

/// What a step of the machine may consult besides the record: the time, the
/// job's kind (nil when it is gone from the config), the daemon's limits and
/// one uniform random draw for jitter. Nothing else: no clock, no files.
public struct MachineContext: Sendable {
    public var now: Double
    public var kind: KindConfig?
    public var daemon: DaemonSettings
    /// Uniform in [0, 1): the draw a backoff's jitter uses.
    public var jitter: Double

    public init(now: Double, kind: KindConfig?, daemon: DaemonSettings, jitter: Double) {
        self.now = now
        self.kind = kind
        self.daemon = daemon
        self.jitter = jitter
    }
}

/// An effect, with the record as it stood when the effect was planned: an
/// effect that fails hands that record back to the machine.
public struct PlannedEffect: Sendable {
    public var effect: JobEffect
    public var record: JobRecord

    package init(effect: JobEffect, record: JobRecord) {
        self.effect = effect
        self.record = record
    }
}

public struct Transition: Sendable {
    public var record: JobRecord
    public var effects: [PlannedEffect]
}

/// The job's life, as a pure function: `(record, event, context) ->
/// (record', [effect])`. It performs no I/O and reads no clock; the engine
/// carries out the effects and the simulator checks them. Each change of
/// state is one named transition below (`JobState.edges` lists them).
public enum JobMachine {
    /// How many (kind, unknown status) pairs the shell remembers for warn-once.
    public static let maxWarnedStatuses = 256
    /// A server's `Retry-After` is honoured up to this long.
    public static let maxRetryAfter = 6 * 3600.0
    /// A job whose kind left the config looks again this much later.
    public static let missingKindWait = 60.0
    /// Publishing that failed is tried again this much later.
    public static let publishRetry = 30.0
    /// A download that waits for disk space looks again this much later.
    public static let diskSpaceWait = 5.0

    public static func step(_ record: JobRecord, _ event: JobEvent, _ context: MachineContext) -> Transition {
        var s = Step(r: record, c: context)
        s.handle(event)
        return Transition(record: s.r, effects: s.planned)
    }
}

/// One step's work: the record being changed and the effects planned so far.
struct Step {
    var r: JobRecord
    let c: MachineContext
    var planned: [PlannedEffect] = []
    var now: Double { c.now }

    // MARK: effects

    mutating func emit(_ e: JobEffect) { planned.append(PlannedEffect(effect: e, record: r)) }
    mutating func save(_ event: String? = nil) { emit(.save(r, event: event)) }
    mutating func log(_ level: Logger.Level, _ message: String) { emit(.log(level, message)) }

    // MARK: events

    mutating func handle(_ event: JobEvent) {
        switch event {
        case .due(let facts): due(facts)
        case .noToken(let wait):
            r.nextAt = now + wait
            save()
        case .pollAnswered(let url, let hop, let response): pollAnswered(url: url, hop: hop, response)
        case .pageAnswered(let url, let hop, let response): pageAnswered(url: url, hop: hop, response)
        case .transferFinished(let url, let hop, let response): transferFinished(url: url, hop: hop, response)
        case .decodeFinished(let url, let response, let bytes, let outcome): decodeFinished(url: url, response: response, bytes: bytes, outcome)
        case .resultMissing: refetch()
        case .published(let path, let recovered): published(path: path, recovered: recovered)
        case .effectFailed(let effect, let problem): effectFailed(effect, problem)
        case .cancelRequested(let inFlight): cancel(inFlight: inFlight)
        case .retryRequested: retryRequested()
        case .progressed(let bytes, let total, let rate): progressed(bytes: bytes, total: total, rate: rate)
        case .deadlinePassed(let bytes): deadlinePassed(bytesDone: bytes)
        case .crashedTwice(let signal): crashedTwice(signal: signal)
        }
    }

    mutating func due(_ facts: DueFacts) {
        switch r.state {
        case .registered, .polling: startPoll()
        case .fetching: if r.pageNext != nil { startPage(facts) } else { startFetch(facts) }
        case .publishing:
            if let path = facts.alreadyPublished {
                // What is left in staging is an older result swapped out, or nothing.
                emit(.removeStaging)
                published(path: path, recovered: true)
            } else {
                emit(.publish(r))
            }
        case .succeeded, .failed, .cancelled: break
        }
    }

    mutating func effectFailed(_ effect: JobEffect, _ problem: String) {
        switch effect {
        case .start:
            retry(problem, level: .error)
        case .stage:
            // Nothing is lost: the job is polled again and the result rewritten.
            retry("cannot write the result into the staging directory: \(problem)", level: .error)
        case .truncatePages(let file, _):
            retry("cannot prepare \(file): \(problem)", level: .error)
        case .appendPage(let file, _):
            retry("cannot write \(file): \(problem)", level: .error)
        case .nameArtifact:
            r.reason = "cannot name the result: \(problem)"
            finish(.failed)
        case .publish:
            emit(.count(.publishFailed(kind: r.key.kind)))
            r.lastError = "publishing failed: \(problem)"
            r.nextAt = now + JobMachine.publishRetry
            log(.error, "publishing failed, retrying in \(Int(JobMachine.publishRetry))s: \(problem)")
            save()
        default:
            log(.error, "\(problem)")
        }
    }

    // MARK: helpers

    /// The job's kind, or nil when it is gone from the config (the job then waits for it).
    mutating func requireKind() -> KindConfig? {
        if let k = c.kind { return k }
        emit(.kindMissing(r.key.kind))
        r.nextAt = now + JobMachine.missingKindWait
        save()
        return nil
    }

    /// The kind of a due job, or nil when it waits for its kind or has just failed at its `timeout`.
    mutating func dueKind(doing: String) -> KindConfig? {
        guard let kind = requireKind() else { return nil }
        return failIfTimedOut(kind, doing: doing) ? nil : kind
    }

    /// Fails the job if it is older than its kind's `timeout`; true if it did.
    mutating func failIfTimedOut(_ kind: KindConfig, doing: String) -> Bool {
        guard now - r.clockStart > kind.timeout else { return false }
        r.reason = "timed out: \(doing) within \(Units.formatDuration(kind.timeout)) of \(r.retries > 0 ? "the last retry" : "registration")" +
            (r.lastError.map { " (last problem: \($0))" } ?? "")
        finish(.failed)
        return true
    }

    /// A problem that heals by waiting: backs off (exponentially, with
    /// jitter; `Retry-After` wins when the server gives one), never past
    /// the job's timeout, and logs.
    mutating func retry(_ problem: String, response: HTTPResponse? = nil, level: Logger.Level = .warning) {
        guard let kind = requireKind() else { return }
        r.attempts += 1
        r.lastError = problem
        var delay = kind.backoff.retryDelay(after: r.attempts, jitter: c.jitter)
        if let after = response?.retryAfter(now: now) { delay = max(min(after, JobMachine.maxRetryAfter), 1) }
        // Never past the job's timeout: a server's Retry-After cannot park a job beyond it.
        r.nextAt = min(now + delay, max(now, r.clockStart + kind.timeout) + 1)
        log(level, "\(problem); retrying in \(Units.formatDuration(delay))")
        save(r.attempts == 1 ? problem : nil)
    }

    /// The next poll: the backoff schedule, or when the API says the job
    /// should be done if that is later (never past the job's timeout).
    mutating func schedulePoll(_ kind: KindConfig, notBefore: Double?) {
        r.nextAt = now + kind.backoff.pollDelay(after: r.polls, jitter: 2 * c.jitter - 1)
        if let t = notBefore, t > now {
            r.nextAt = min(max(t, now + kind.pollInterval), r.clockStart + kind.timeout + 1)
            log(.debug, "the API expects completion at \(Timestamp.iso8601(t)); next poll then")
        }
    }

    // MARK: transitions (one per edge of JobState.edges)

    /// registered → polling: the API knows the job and is at work on it.
    mutating func keepPolling() { r.state = .polling }

    /// polling → fetching: the result is there; its URL or pages come next.
    mutating func startFetching(_ what: String) {
        r.state = .fetching
        r.attempts = 0
        r.nextAt = now
        log(.info, "completed; fetching \(what)")
        save("completed; fetching \(what)")
    }

    /// fetching → polling: the result URL is unusable or expired; the status endpoint gives a fresh one.
    mutating func refreshResultURL(_ kind: KindConfig, url: ParsedURL, why: String) {
        r.state = .polling
        r.resultURL = nil
        r.attempts += 1
        r.lastError = "result URL \(url.redacted): \(why)"
        r.nextAt = now + kind.backoff.retryDelay(after: r.attempts, jitter: c.jitter)
        log(.warning, "result URL \(url.redacted): \(why); polling the status endpoint for a fresh one")
        save(r.lastError)
    }

    /// any active state → publishing: the outcome is decided and recorded
    /// durably before the job's directory is published.
    mutating func finish(_ outcome: Outcome) {
        r.outcome = outcome
        r.rate = nil
        r.state = .publishing
        r.finishedAt = now
        r.updatedAt = now
        r.nextAt = now
        if outcome == .succeeded { r.reason = nil }
        // job.json says what the store keeps: server text in a reason is bounded.
        r.reason = r.reason.map { ServerText.capped($0) }
        if outcome == .succeeded {
            log(.info, "succeeded; publishing")
        } else {
            log(.warning, "\(outcome.rawValue): \(r.reason ?? "")")
            // A failed job's directory holds job.json only.
            emit(.clearStaging)
        }
        save(outcome == .succeeded ? "succeeded" : "\(outcome.rawValue): \(r.reason ?? "")")
        emit(.publish(r))
    }

    /// publishing → fetching: the staged download is gone; fetch it again rather than publish without it.
    mutating func refetch() {
        guard r.state == .publishing else { return }
        r.state = .fetching
        r.outcome = nil
        r.nextAt = now
        save("result files missing before publishing; downloading again")
    }

    /// publishing → succeeded | failed | cancelled.
    mutating func published(path: String, recovered: Bool) {
        guard r.state == .publishing else { return }
        let outcome = r.outcome ?? .failed
        r.state = switch outcome {
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
        r.updatedAt = now
        // The hook and webhook are pending in the same save as the outcome: they run at least once.
        let hooks = c.kind?.hooks
        r.hook = hooks?.onComplete != nil ? .pending(at: now) : nil
        r.notify = hooks?.notifyURL != nil ? .pending(at: now) : nil
        emit(.count(.finished(kind: r.key.kind, outcome: outcome)))
        save("published to \(path)")
        log(.info, "published \(outcome.rawValue) to \(path)\(recovered ? " (recovered)" : "")")
        if r.hook != nil || r.notify != nil { emit(.deliver) }
    }

    /// failed | cancelled → registered: a fresh record; only the job's
    /// identity, its registration and its count of retries carry over.
    mutating func retryRequested() {
        guard r.state == .failed || r.state == .cancelled else {
            let note = "retry requested, but the job is \(r.state.rawValue); only failed or cancelled jobs are retried"
            log(.notice, note)
            r.updatedAt = now
            save(note)
            return
        }
        let was = r.state
        let dropped = [r.hook?.isOutstanding == true ? "on_complete" : nil, r.notify?.isOutstanding == true ? "notify_url" : nil].compactMap { $0 }
        if !dropped.isEmpty {
            log(.notice, "the previous outcome's \(dropped.joined(separator: " and ")) will not run again (a run under way ends unrecorded): the job is retried")
        }
        var fresh = JobRecord(key: r.key, state: .registered, registeredAt: r.registeredAt)
        fresh.retries = r.retries + 1
        fresh.timeoutFrom = now
        fresh.updatedAt = now
        fresh.nextAt = now
        r = fresh
        log(.notice, "retry \(r.retries) requested by the operator (was \(was.rawValue)); polling again, the old result stays until the new one replaces it")
        save("retry \(r.retries) requested (was \(was.rawValue))")
    }

    mutating func cancel(inFlight: String?) {
        guard !r.state.isTerminal && r.state != .publishing else {
            let note = "cancel requested, but the job is already \(r.state == .publishing ? "finishing" : r.state.rawValue); nothing to cancel"
            log(.notice, note)
            r.updatedAt = now
            save(note)
            return
        }
        emit(.abort)
        r.updatedAt = now
        r.reason = "cancelled by the operator while \(r.state.rawValue)" + (inFlight.map { " (\($0) stopped)" } ?? "")
        finish(.cancelled)
    }

    mutating func crashedTwice(signal: Int32?) {
        guard !r.state.isTerminal else { return }
        let by = signal.map { " (last by signal \($0))" } ?? ""
        log(.error, "the daemon stopped twice while handling this job\(by); failing it so that it cannot stop the daemon again")
        r.reason = "the daemon stopped twice while handling this job\(by): its input may trip a bug; see the daemon's log" +
            (r.lastError.map { " (last problem: \($0))" } ?? "")
        finish(.failed)
    }

    mutating func progressed(bytes: Int64, total: Int64?, rate: Double?) {
        guard r.state == .fetching else { return }
        if let rate { r.rate = r.rate.map { 0.7 * $0 + 0.3 * rate } ?? rate }
        r.bytesDone = bytes
        r.bytesTotal = total ?? r.bytesTotal
        if let total, total > 0 { r.progress = Double(bytes) / Double(total) }
        save()
    }

    /// A job's `timeout` holds while its result transfers, too: a server
    /// that trickles bytes cannot hold a download slot past it.
    mutating func deadlinePassed(bytesDone: Int64) {
        guard r.state == .fetching, let kind = c.kind, now - r.clockStart > kind.timeout else { return }
        r.bytesDone = bytesDone
        emit(.abort)
        _ = failIfTimedOut(kind, doing: "the result could not be fetched (\(Units.formatBytes(r.bytesDone)) had arrived)")
    }
}

extension JobState {
    /// The edges of the state diagram: every change of state the machine makes.
    public static let edges: Set<Edge> = [
        Edge(.registered, .polling), Edge(.registered, .fetching), Edge(.polling, .fetching), Edge(.fetching, .polling),
        Edge(.registered, .publishing), Edge(.polling, .publishing), Edge(.fetching, .publishing),
        Edge(.publishing, .fetching),
        Edge(.publishing, .succeeded), Edge(.publishing, .failed), Edge(.publishing, .cancelled),
        Edge(.failed, .registered), Edge(.cancelled, .registered),
    ]

    public struct Edge: Hashable, Sendable, CustomStringConvertible {
        public let from: JobState
        public let to: JobState
        public init(_ from: JobState, _ to: JobState) { self.from = from; self.to = to }
        public var description: String { "\(from.rawValue) → \(to.rawValue)" }
    }
}
