import JobFetchCore
/// A store's failure: the backend's code (SQLite's result code; PostgreSQL's
/// SQLSTATE; 0 where it has none), its message and what was being done.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let context: String
    /// PostgreSQL's five-character error code, for its errors.
    public let sqlstate: String?
    /// The job is held by another daemon (or this one's lease on it ran out): nothing was written.
    public let leaseLost: Bool
    public init(code: Int32, message: String, context: String, sqlstate: String? = nil, leaseLost: Bool = false) {
        self.code = code
        self.message = message
        self.context = context
        self.sqlstate = sqlstate
        self.leaseLost = leaseLost
    }
    public var description: String {
        if leaseLost { return "\(context): \(message)" }
        if let sqlstate { return "\(context): \(message) (PostgreSQL SQLSTATE \(sqlstate))" }
        return "\(context): \(message) (SQLite code \(code))"
    }
}

/// Where jobs live: the seam between the engine and a backend (SQLite in
/// `state_dir` for the daemon, memory for the simulator). The engine asks
/// for what is due, reads and writes whole records, and groups one turn's
/// writes in `batch`; the schedule of due times is the store's to keep.
public protocol JobStoring: AnyObject {
    /// Registers jobs in one transaction; a job that exists is left as it is. Returns the new keys.
    @discardableResult
    func register(_ keys: [JobKey], now: Double) throws(StoreError) -> [JobKey]
    func job(_ key: JobKey) throws(StoreError) -> JobRecord?
    /// Writes back a record, with an optional history line.
    func save(_ record: JobRecord, event: String?) throws(StoreError)
    /// Runs `body` as one transaction.
    func batch<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T
    /// Runs `body` as one transaction whose commit does not wait for the
    /// disk: for what is only reported (a download's bytes and rate), so
    /// that a disk slower than the download cannot stop the engine, and
    /// with it every socket, once a second. A power cut may lose it, never
    /// half of it; it is durable once a later transaction is. Inside
    /// another transaction, that one decides.
    func batchUnsynced<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T
    func list(kind: String?, state: JobState?) throws(StoreError) -> [JobRecord]
    /// The unclaimed jobs in `states` whose `next_at` has come, soonest first, at most `limit`.
    func dueKeys(in states: [JobState], now: Double, limit: Int) -> [JobKey]
    /// The soonest `next_at` among unclaimed jobs in `states`.
    func nextDue(in states: [JobState]) -> Double?
    /// A request is in flight for the job: it is not due until `unclaim`.
    func claim(_ key: JobKey)
    func unclaim(_ key: JobKey)
    func counts() throws(StoreError) -> [(kind: String, state: JobState, count: Int)]
    func events(_ key: JobKey, limit: Int) throws(StoreError) -> [(at: Double, message: String)]
    /// Finished jobs (succeeded, failed, cancelled) that finished before
    /// `cutoff` and whose published directory was not removed since, oldest first, at most `limit`.
    func finishedWithResults(before cutoff: Double, limit: Int) throws(StoreError) -> [JobRecord]
    /// Removes at most `limit` finished jobs that finished before `cutoff`
    /// (with `resultsRemoved`, only those whose published directory was
    /// removed since), with their history; returns how many.
    func forget(finishedBefore cutoff: Double, resultsRemoved: Bool, limit: Int) throws(StoreError) -> Int
    /// Jobs whose hook or webhook is pending, or was running when a daemon stopped.
    func outstandingDeliveries() throws(StoreError) -> [JobRecord]

    // A shared store's leases. SQLite and memory have one daemon: nothing to do.
    /// Renews the leases on the jobs this daemon works on, when due; returns the jobs whose lease was lost.
    func maintain(now: Double) -> [JobKey]
    /// When `maintain` next has work, or nil.
    var maintainAt: Double? { get }
    /// Lets go of the jobs claimed by `dueKeys` but not being worked on (the end of a turn).
    func settle()
    /// Runs `body` (a publication) in one transaction while this daemon provably holds the job.
    func fenced<T>(_ key: JobKey, _ body: () throws(StoreError) -> T) throws(StoreError) -> T
    /// The daemons sharing the store, this one included.
    var liveNodes: Int { get }
    /// Whether this daemon still holds the job it works on (its lease has not run out).
    func holds(_ key: JobKey, now: Double) -> Bool
}

extension JobStoring {
    public func maintain(now: Double) -> [JobKey] { [] }
    public var maintainAt: Double? { nil }
    public func settle() {}
    public func fenced<T>(_ key: JobKey, _ body: () throws(StoreError) -> T) throws(StoreError) -> T { try batch(body) }
    public var liveNodes: Int { 1 }
    public func holds(_ key: JobKey, now: Double) -> Bool { true }
}

extension JobStoring {
    public func save(_ record: JobRecord) throws(StoreError) { try save(record, event: nil) }
    public func events(_ key: JobKey) throws(StoreError) -> [(at: Double, message: String)] { try events(key, limit: 50) }
    public func list() throws(StoreError) -> [JobRecord] { try list(kind: nil, state: nil) }

    /// What a store keeps of server text: status values, errors, reasons and
    /// warnings cut to `ServerText.maxBytes` (`last_status` is bounded by the body limit).
    static func bounded(_ record: JobRecord) -> JobRecord {
        var r = record
        r.apiStatus = r.apiStatus.map { ServerText.capped($0) }
        r.lastError = r.lastError.map { ServerText.capped($0) }
        r.reason = r.reason.map { ServerText.capped($0) }
        r.warnings = r.warnings.map { ServerText.capped($0) }
        if let last = r.hook?.last { r.hook?.last = ServerText.capped(last) }
        if let last = r.notify?.last { r.notify?.last = ServerText.capped(last) }
        return r
    }
}

/// A store in memory, for the simulator: the same contract as the SQLite
/// store (a failed batch leaves what was committed), nothing on disk. The
/// simulator keeps one across simulated crashes, as a disk would be kept.
public final class MemoryStore: JobStoring {
    private var rows: [JobKey: JobRecord] = [:]
    private var history: [JobKey: [(at: Double, message: String)]] = [:]
    private var schedule = Schedule()
    /// The rows as they were when the open batch began.
    private var undo: (rows: [JobKey: JobRecord], history: [JobKey: [(at: Double, message: String)]])?
    /// The simulator's disk faults: a write fails while this says so.
    public var failWrites: (() -> Bool)?

    public init() {}

    public func register(_ keys: [JobKey], now: Double) throws(StoreError) -> [JobKey] {
        try batch { () throws(StoreError) in
            try checkWrite("register")
            var added: [JobKey] = []
            for key in keys where rows[key] == nil {
                rows[key] = JobRecord(key: key, state: .registered, registeredAt: now)
                history[key, default: []].append((now, "registered"))
                schedule.set(key, state: .registered, at: now)
                added.append(key)
            }
            return added
        }
    }

    public func job(_ key: JobKey) throws(StoreError) -> JobRecord? { rows[key] }

    public func save(_ record: JobRecord, event: String?) throws(StoreError) {
        try checkWrite("save \(record.key)")
        guard rows[record.key] != nil else { return }
        let r = Self.bounded(record)
        rows[r.key] = r
        schedule.set(r.key, state: r.state, at: r.nextAt)
        if let event {
            var h = history[r.key, default: []]
            h.append((r.updatedAt, ServerText.capped(event)))
            if h.count > JobStore.maxEventsPerJob { h.removeFirst(h.count - JobStore.maxEventsPerJob) }
            history[r.key] = h
        }
    }

    public func batchUnsynced<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T { try batch(body) }

    public func batch<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        if undo != nil { return try body() }
        undo = (rows, history)
        do {
            let value = try body()
            try checkWrite("commit")
            undo = nil
            return value
        } catch {
            if let (r, h) = undo { rows = r; history = h }
            undo = nil
            rebuildSchedule()
            throw error
        }
    }

    public func list(kind: String?, state: JobState?) throws(StoreError) -> [JobRecord] {
        rows.values.filter { (kind == nil || $0.key.kind == kind) && (state == nil || $0.state == state) }
            .sorted { ($0.key.kind, $0.registeredAt, $0.key.id.rawValue) < ($1.key.kind, $1.registeredAt, $1.key.id.rawValue) }
    }

    public func dueKeys(in states: [JobState], now: Double, limit: Int) -> [JobKey] { schedule.due(in: states, now: now, limit: limit) }
    public func nextDue(in states: [JobState]) -> Double? { schedule.nextDue(in: states) }
    public func claim(_ key: JobKey) { schedule.claim(key) }
    public func unclaim(_ key: JobKey) { schedule.unclaim(key) }

    public func counts() throws(StoreError) -> [(kind: String, state: JobState, count: Int)] {
        struct Group: Hashable { let kind: String; let state: JobState }
        let by = Dictionary(grouping: rows.values) { Group(kind: $0.key.kind, state: $0.state) }
        return by.keys.sorted { ($0.kind, $0.state.rawValue) < ($1.kind, $1.state.rawValue) }.map { ($0.kind, $0.state, by[$0]?.count ?? 0) }
    }

    public func events(_ key: JobKey, limit: Int) throws(StoreError) -> [(at: Double, message: String)] {
        Array((history[key] ?? []).suffix(limit))
    }

    public func finishedWithResults(before cutoff: Double, limit: Int) throws(StoreError) -> [JobRecord] {
        Array(rows.values.filter { r in
            guard r.state.isTerminal, let f = r.finishedAt, f < cutoff else { return false }
            return r.resultsRemovedAt.map { $0 < f } ?? true
        }.sorted { ($0.finishedAt ?? 0) < ($1.finishedAt ?? 0) }.prefix(limit))
    }

    public func forget(finishedBefore cutoff: Double, resultsRemoved: Bool, limit: Int) throws(StoreError) -> Int {
        try checkWrite("forget")
        let gone = rows.values.filter { r in
            guard r.state.isTerminal, let f = r.finishedAt, f < cutoff else { return false }
            return !resultsRemoved || (r.resultsRemovedAt.map { $0 >= f } ?? false)
        }.prefix(limit).map(\.key)
        for key in gone { rows[key] = nil; history[key] = nil }
        return gone.count
    }

    public func outstandingDeliveries() throws(StoreError) -> [JobRecord] {
        rows.values.filter { $0.hook?.isOutstanding == true || $0.notify?.isOutstanding == true }.sorted { $0.key < $1.key }
    }

    /// What a restarted daemon finds: the rows, with no claims (those were the dead process's).
    public func reopened() {
        schedule = Schedule()
        rebuildSchedule()
    }

    /// Every active job's due time as the schedule holds it, for the simulator's checks.
    public var scheduled: [JobKey: (state: JobState, at: Double)] { schedule.entries }
    public var claimed: Set<JobKey> { schedule.claimedKeys }

    private func rebuildSchedule() {
        schedule.clear()
        for r in rows.values { schedule.set(r.key, state: r.state, at: r.nextAt) }
    }

    private func checkWrite(_ what: String) throws(StoreError) {
        if failWrites?() == true { throw StoreError(code: 0, message: "disk I/O error (simulated)", context: what) }
    }
}
