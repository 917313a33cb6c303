/// The job state machine:
///
///     registered → polling → fetching → publishing → succeeded
///                     │          │           │
///                     └──────────┴───────────┴────→ failed | cancelled
public enum JobState: String, Sendable, CaseIterable {
    case registered, polling, fetching, publishing, succeeded, failed, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    /// States in which the engine still has work to do for the job.
    public static let active: [JobState] = [.registered, .polling, .fetching, .publishing]
}

public enum Outcome: String, Sendable {
    case succeeded, failed, cancelled
}

/// Everything the store keeps about one job.
public struct JobRecord: Sendable, Equatable {
    public var key: JobKey
    public var state: JobState
    public var registeredAt: Double
    public var updatedAt: Double
    /// When the engine should next act on the job (poll or fetch).
    public var nextAt: Double
    /// Consecutive failed attempts (network, HTTP errors); reset by an answer.
    public var attempts: Int = 0
    public var polls: Int = 0
    public var lastHTTPStatus: Int?
    public var lastError: String?
    /// The last status document, as the API sent it.
    public var lastStatus: String?
    public var apiStatus: String?
    public var progress: Double?
    public var bytesDone: Int64 = 0
    public var bytesTotal: Int64?
    /// Where the result is: an absolute URL (may carry a signature: never logged).
    public var resultURL: String?
    public var reason: String?
    public var warnings: [String] = []
    public var finishedAt: Double?
    public var notFoundSince: Double?
    /// Set when the job enters `publishing`: what it will end as.
    public var outcome: Outcome?
    /// The mapping's summary (`{"results": {...}}`), as JSON text, for `job.json`.
    public var summary: String?
    /// While fetching a paged result: the offset of the next page.
    public var pageNext: Int?
    /// When the job's `timeout` clock started: registration, or the last retry.
    public var timeoutFrom: Double?
    /// How many times an operator asked for the job again.
    public var retries: Int = 0
    /// Bytes per second while downloading (smoothed); nil otherwise.
    public var rate: Double?
    /// When `keep_results` removed the published directory (a later publication, after a retry, counts again).
    public var resultsRemovedAt: Double?
    /// The `on_complete` hook and the `notify_url` delivery of the last
    /// publication; nil when the kind had none.
    public var hook: Delivery?
    public var notify: Delivery?
    /// With a shared (PostgreSQL) store: the daemon that holds the job, or last held it; not written by `save`.
    public var node: String?

    /// Where the `timeout` clock starts.
    public var clockStart: Double { timeoutFrom ?? registeredAt }

    public init(key: JobKey, state: JobState, registeredAt: Double) {
        self.key = key
        self.state = state
        self.registeredAt = registeredAt
        self.updatedAt = registeredAt
        self.nextAt = registeredAt
    }
}

/// One thing done after publication, at least once: the `on_complete`
/// hook or the `notify_url` webhook. It is `pending` from the transaction
/// that records the outcome; `running` is recorded before the hook starts,
/// so a daemon that dies meanwhile runs it again.
public struct Delivery: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        case pending, running, succeeded, failed
    }
    public var state: State
    /// Runs (or requests) started so far.
    public var attempts = 0
    /// When it is due (pending).
    public var nextAt: Double
    /// How the last run ended: "exit 0", "HTTP 500", "killed after hook_timeout (5m)"…
    public var last: String?
    public var lastAt: Double?

    public init(state: State, nextAt: Double) {
        self.state = state
        self.nextAt = nextAt
    }

    public static func pending(at t: Double) -> Delivery { Delivery(state: .pending, nextAt: t) }

    /// Waiting for a run: pending, or running when a daemon stopped.
    public var isOutstanding: Bool { state == .pending || state == .running }
}
