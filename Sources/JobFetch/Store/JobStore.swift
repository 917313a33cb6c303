import Glibc

/// The daemon's state: one SQLite database in `state_dir`, written by the
/// daemon alone and read by `jobfetchctl`. The engine sees only this small
/// protocol: register, claim what is due, record, finish.
public final class JobStore {
    let db: SQLiteDatabase
    public let readOnly: Bool
    /// What is due when, for the daemon (a writer); mirrors the committed rows.
    var schedule = Schedule()

    /// Each entry migrates the schema one version up; never edit a shipped one.
    static let migrations: [String] = [
        """
        CREATE TABLE jobs (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            state TEXT NOT NULL,
            registered_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            next_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            polls INTEGER NOT NULL DEFAULT 0,
            last_http_status INTEGER,
            last_error TEXT,
            last_status TEXT,
            api_status TEXT,
            progress REAL,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            bytes_total INTEGER,
            result_url TEXT,
            reason TEXT,
            warnings TEXT NOT NULL DEFAULT '[]',
            finished_at REAL,
            not_found_since REAL,
            outcome TEXT,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID;
        CREATE INDEX jobs_due ON jobs (state, next_at);
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            at REAL NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX events_job ON events (kind, id, seq);
        """,
        // 2: presets and operator requests: the published summary, paging
        // progress, the retry count and when the timeout clock restarted.
        """
        ALTER TABLE jobs ADD COLUMN summary TEXT;
        ALTER TABLE jobs ADD COLUMN page_next INTEGER;
        ALTER TABLE jobs ADD COLUMN timeout_from REAL;
        ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
        """,
        // 3: the download rate, for jobfetchctl's rate and ETA.
        """
        ALTER TABLE jobs ADD COLUMN rate REAL;
        """,
    ]
    public static var schemaVersion: Int { migrations.count }

    static let columns = "kind, id, state, registered_at, updated_at, next_at, attempts, polls, last_http_status, last_error, last_status, api_status, progress, bytes_done, bytes_total, result_url, reason, warnings, finished_at, not_found_since, outcome, summary, page_next, timeout_from, retries, rate"

    /// Opens (and for the daemon creates and migrates) the database.
    public init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.readOnly = readOnly
        db = try SQLiteDatabase(path: path, readOnly: readOnly)
        if readOnly {
            let v = try userVersion()
            guard v <= Self.schemaVersion else {
                throw SQLiteError(code: 0, message: "database schema \(v) is newer than this program (\(Self.schemaVersion))", context: "open \(path)")
            }
            return
        }
        try db.execute("PRAGMA journal_mode=WAL")
        // FULL: a commit is on disk before the spool file that fed it is removed.
        try db.execute("PRAGMA synchronous=FULL")
        try migrate()
        try loadSchedule()
    }

    /// Fills the schedule from the table: at open, and after a rollback
    /// (whose undone writes the schedule had already taken in).
    func loadSchedule() throws(SQLiteError) {
        schedule.clear()
        let active = JobState.active.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        let s = try db.prepare("SELECT kind, id, state, next_at FROM jobs WHERE state IN (\(active))")
        while try s.step() {
            guard let kind = s.text(0), let idText = s.text(1), let id = try? JobID(idText),
                  let state = s.text(2).flatMap(JobState.init(rawValue:)) else { continue }
            schedule.set(JobKey(kind: kind, id: id), state: state, at: s.double(3))
        }
    }

    /// Runs a transaction; if it rolls back, the schedule is rebuilt from what is committed.
    func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        do {
            return try db.transaction(body)
        } catch {
            if !db.inTransaction { try? loadSchedule() }
            throw error
        }
    }

    func userVersion() throws(SQLiteError) -> Int {
        let s = try db.prepare("PRAGMA user_version")
        _ = try s.step()
        return Int(s.int(0))
    }

    func migrate() throws(SQLiteError) {
        let current = try userVersion()
        guard current <= Self.migrations.count else {
            throw SQLiteError(code: 0, message: "database schema \(current) is newer than this program (\(Self.schemaVersion)); refusing to touch it", context: "migrate \(db.path)")
        }
        for version in current..<Self.migrations.count {
            try db.transaction { () throws(SQLiteError) in
                try db.execute(Self.migrations[version])
                try db.execute("PRAGMA user_version = \(version + 1)")
            }
        }
    }

    // MARK: register

    /// Registers jobs in one transaction; a job that exists is left as it is.
    /// Returns the keys that were new.
    @discardableResult
    public func register(_ keys: [JobKey], now: Double) throws(SQLiteError) -> [JobKey] {
        try transaction { () throws(SQLiteError) in
            let insert = try db.prepare("INSERT OR IGNORE INTO jobs (kind, id, state, registered_at, updated_at, next_at) VALUES (?, ?, 'registered', ?, ?, ?)")
            let event = try db.prepare("INSERT INTO events (kind, id, at, message) VALUES (?, ?, ?, 'registered')")
            var added: [JobKey] = []
            for key in keys {
                try insert.run([.text(key.kind), .text(key.id.rawValue), .double(now), .double(now), .double(now)])
                if db.changes > 0 {
                    added.append(key)
                    schedule.set(key, state: .registered, at: now)
                    try event.run([.text(key.kind), .text(key.id.rawValue), .double(now)])
                }
            }
            return added
        }
    }

    // MARK: read

    public func job(_ key: JobKey) throws(SQLiteError) -> JobRecord? {
        let s = try db.cached("SELECT \(Self.columns) FROM jobs WHERE kind = ? AND id = ?")
        defer { s.reset() }
        try s.bind([.text(key.kind), .text(key.id.rawValue)])
        return try s.step() ? Self.record(s) : nil
    }

    /// Runs `body` as one transaction: the engine's updates of one turn of
    /// its loop are committed (and fsynced) together.
    public func batch<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try transaction(body)
    }

    public func list(kind: String? = nil, state: JobState? = nil) throws(SQLiteError) -> [JobRecord] {
        let s = try db.prepare("SELECT \(Self.columns) FROM jobs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY kind, registered_at, id")
        try s.bind([kind.map { .text($0) } ?? .null, state.map { .text($0.rawValue) } ?? .null])
        var out: [JobRecord] = []
        while try s.step() { if let r = Self.record(s) { out.append(r) } }
        return out
    }

    /// The keys of the jobs in `states` whose `next_at` has come, soonest
    /// first, at most `limit`, without claimed ones. From the in-memory
    /// schedule: the engine asks every turn of its loop.
    public func dueKeys(in states: [JobState], now: Double, limit: Int) -> [JobKey] {
        schedule.due(in: states, now: now, limit: limit)
    }

    /// The soonest `next_at` among unclaimed jobs in `states`.
    public func nextDue(in states: [JobState]) -> Double? {
        schedule.nextDue(in: states)
    }

    /// The engine has a request in flight for the job: it is not due until `unclaim`.
    public func claim(_ key: JobKey) { schedule.claim(key) }
    public func unclaim(_ key: JobKey) { schedule.unclaim(key) }

    public func counts() throws(SQLiteError) -> [(kind: String, state: JobState, count: Int)] {
        let s = try db.prepare("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state")
        var out: [(String, JobState, Int)] = []
        while try s.step() {
            if let k = s.text(0), let st = s.text(1).flatMap(JobState.init(rawValue:)) { out.append((k, st, Int(s.int(2)))) }
        }
        return out
    }

    public func events(_ key: JobKey, limit: Int = 50) throws(SQLiteError) -> [(at: Double, message: String)] {
        let s = try db.prepare("SELECT at, message FROM (SELECT seq, at, message FROM events WHERE kind = ? AND id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq")
        try s.bind([.text(key.kind), .text(key.id.rawValue), .int(Int64(limit))])
        var out: [(Double, String)] = []
        while try s.step() { out.append((s.double(0), s.text(1) ?? "")) }
        return out
    }

    // MARK: write

    /// The newest history lines kept per job; older ones are dropped as new ones come.
    public static let maxEventsPerJob = 200

    /// Writes back a job's record, with an optional history line, in one
    /// transaction. Text that may have come from a server (status, errors,
    /// warnings, the history line) is stored cut to `ServerText.maxBytes`;
    /// `last_status` is the status document itself, bounded by the body limit.
    public func save(_ record: JobRecord, event: String? = nil) throws(SQLiteError) {
        var r = record
        r.apiStatus = r.apiStatus.map { ServerText.capped($0) }
        r.lastError = r.lastError.map { ServerText.capped($0) }
        r.reason = r.reason.map { ServerText.capped($0) }
        r.warnings = r.warnings.map { ServerText.capped($0) }
        try transaction { () throws(SQLiteError) in
            let s = try db.cached("""
                UPDATE jobs SET state = ?, updated_at = ?, next_at = ?, attempts = ?, polls = ?, last_http_status = ?,
                last_error = ?, last_status = ?, api_status = ?, progress = ?, bytes_done = ?, bytes_total = ?,
                result_url = ?, reason = ?, warnings = ?, finished_at = ?, not_found_since = ?, outcome = ?,
                summary = ?, page_next = ?, timeout_from = ?, retries = ?, rate = ?
                WHERE kind = ? AND id = ?
                """)
            try s.run([
                .text(r.state.rawValue), .double(r.updatedAt), .double(r.nextAt), .int(Int64(r.attempts)),
                .int(Int64(r.polls)), r.lastHTTPStatus.map { .int(Int64($0)) } ?? .null,
                r.lastError.map { .text($0) } ?? .null, r.lastStatus.map { .text($0) } ?? .null,
                r.apiStatus.map { .text($0) } ?? .null, r.progress.map { .double($0) } ?? .null,
                .int(r.bytesDone), r.bytesTotal.map { .int($0) } ?? .null,
                r.resultURL.map { .text($0) } ?? .null, r.reason.map { .text($0) } ?? .null,
                .text(JSONWriter.string(.array(r.warnings.map { .string($0) }))),
                r.finishedAt.map { .double($0) } ?? .null, r.notFoundSince.map { .double($0) } ?? .null,
                r.outcome.map { .text($0.rawValue) } ?? .null,
                r.summary.map { .text($0) } ?? .null, r.pageNext.map { .int(Int64($0)) } ?? .null,
                r.timeoutFrom.map { .double($0) } ?? .null, .int(Int64(r.retries)), r.rate.map { .double($0) } ?? .null,
                .text(r.key.kind), .text(r.key.id.rawValue),
            ])
            s.reset()
            if db.changes > 0 { schedule.set(r.key, state: r.state, at: r.nextAt) }
            if let event {
                let insert = try db.cached("INSERT INTO events (kind, id, at, message) VALUES (?, ?, ?, ?)")
                try insert.run([.text(r.key.kind), .text(r.key.id.rawValue), .double(r.updatedAt), .text(ServerText.capped(event))])
                insert.reset()
                let trim = try db.cached("""
                    DELETE FROM events WHERE kind = ?1 AND id = ?2 AND seq <= (
                    SELECT seq FROM events WHERE kind = ?1 AND id = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)
                    """)
                try trim.run([.text(r.key.kind), .text(r.key.id.rawValue), .int(Int64(Self.maxEventsPerJob))])
                trim.reset()
            }
        }
    }

    static func record(_ s: Statement) -> JobRecord? {
        guard let kind = s.text(0), let idText = s.text(1), let id = try? JobID(idText),
              let state = s.text(2).flatMap(JobState.init(rawValue:)) else { return nil }
        var r = JobRecord(key: JobKey(kind: kind, id: id), state: state, registeredAt: s.double(3))
        r.updatedAt = s.double(4)
        r.nextAt = s.double(5)
        r.attempts = Int(s.int(6))
        r.polls = Int(s.int(7))
        r.lastHTTPStatus = s.optionalInt(8).map { Int($0) }
        r.lastError = s.text(9)
        r.lastStatus = s.text(10)
        r.apiStatus = s.text(11)
        r.progress = s.optionalDouble(12)
        r.bytesDone = s.int(13)
        r.bytesTotal = s.optionalInt(14)
        r.resultURL = s.text(15)
        r.reason = s.text(16)
        if let w = s.text(17), case .array(let items)? = try? JSONParser.parse(w) {
            r.warnings = items.compactMap(\.scalarText)
        }
        r.finishedAt = s.optionalDouble(18)
        r.notFoundSince = s.optionalDouble(19)
        r.outcome = s.text(20).flatMap(Outcome.init(rawValue:))
        r.summary = s.text(21)
        r.pageNext = s.optionalInt(22).map { Int($0) }
        r.timeoutFrom = s.optionalDouble(23)
        r.retries = Int(s.int(24))
        r.rate = s.optionalDouble(25)
        return r
    }
}
