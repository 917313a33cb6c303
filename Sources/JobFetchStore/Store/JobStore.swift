import Glibc
import JobFetchCore

/// The daemon's state: one SQLite database in `state_dir`, written by the
/// daemon alone and read by `jobfetchctl`. The engine sees only this small
/// protocol: register, claim what is due, record, finish.
public final class JobStore: JobStoring {
    let db: SQLiteDatabase
    public let readOnly: Bool
    /// A reader opened the file before the daemon created its tables (it is starting for the first time).
    public private(set) var isUnset = false
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
    /// The schema: the hand-written migrations, then one version per
    /// version of `JobColumn.all` that adds columns.
    public static var schemaVersion: Int { max(migrations.count, JobColumn.all.map(\.since).max() ?? 0) }

    /// Opens (and for the daemon creates and migrates) the database.
    public init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.readOnly = readOnly
        db = try SQLiteDatabase(path: path, readOnly: readOnly)
        if readOnly {
            let v = try userVersion()
            guard v <= Self.schemaVersion else {
                throw SQLiteError(code: 0, message: "database schema \(v) is newer than this program (\(Self.schemaVersion))", context: "open \(path)")
            }
            isUnset = v == 0
            guard isUnset || v == Self.schemaVersion else {
                throw SQLiteError(code: 0, message: "database schema \(v) is older than this program's (\(Self.schemaVersion)); restart jobfetchd, which migrates it at start",
                                  context: "open \(path)")
            }
            return
        }
        try db.execute("PRAGMA journal_mode=WAL")
        // FULL: a commit is on disk before the spool file that fed it is removed.
        try db.execute("PRAGMA synchronous=FULL")
        try migrate()
        try loadSchedule()
    }

    // The cached statements hold the connection: without this it would never close.
    deinit { db.dropCache() }

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
    /// `synced: false` commits it without an fsync (WAL with `synchronous=NORMAL`:
    /// the next FULL commit's fsync of the WAL covers it); every other
    /// transaction is FULL, set again before it begins should restoring it have failed.
    func transaction<T>(_ body: () throws(SQLiteError) -> T, synced: Bool = true) throws(SQLiteError) -> T {
        if !db.inTransaction && synced != synchronousFull {
            try db.execute(synced ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL")
            synchronousFull = synced
        }
        defer {
            // FULL again at once; should that fail, the next transaction sets it before it begins.
            if !synchronousFull && !db.inTransaction && (try? db.execute("PRAGMA synchronous=FULL")) != nil { synchronousFull = true }
        }
        do {
            return try db.transaction(body)
        } catch {
            if !db.inTransaction { try? loadSchedule() }
            throw error
        }
    }

    /// The connection's `synchronous` is FULL (as opened).
    private var synchronousFull = true

    func userVersion() throws(SQLiteError) -> Int {
        let s = try db.prepare("PRAGMA user_version")
        _ = try s.step()
        return Int(s.int(0))
    }

    func migrate() throws(SQLiteError) {
        let current = try userVersion()
        guard current <= Self.schemaVersion else {
            throw SQLiteError(code: 0, message: "database schema \(current) is newer than this program (\(Self.schemaVersion)); refusing to touch it", context: "migrate \(db.path)")
        }
        // One transaction for every step: a reader (jobfetchctl) sees the schema before or after, never half of it.
        try db.transaction { () throws(SQLiteError) in
            for version in current..<Self.schemaVersion {
                if version < Self.migrations.count { try db.execute(Self.migrations[version]) }
                // Columns declared after the hand-written migrations arrive with their version.
                for column in JobColumn.all where column.since == version + 1 && version >= Self.migrations.count {
                    try db.execute("ALTER TABLE jobs ADD COLUMN \(column.name) \(column.declaration)")
                }
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
        let s = try db.cached("SELECT \(JobColumn.selectList) FROM jobs WHERE kind = ? AND id = ?")
        defer { s.reset() }
        try s.bind([.text(key.kind), .text(key.id.rawValue)])
        return try s.step() ? Self.record(s) : nil
    }

    /// Runs `body` as one transaction: the engine's updates of one turn of
    /// its loop are committed (and fsynced) together.
    public func batch<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try transaction(body)
    }

    public func batchUnsynced<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try transaction(body, synced: false)
    }

    public func list(kind: String? = nil, state: JobState? = nil) throws(SQLiteError) -> [JobRecord] {
        let s = try db.prepare("SELECT \(JobColumn.selectList) FROM jobs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY kind, registered_at, id")
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

    /// The terminal states, as SQL.
    static let terminalList = JobState.allCases.filter(\.isTerminal).map { "'\($0.rawValue)'" }.joined(separator: ", ")

    public func finishedWithResults(before cutoff: Double, limit: Int) throws(SQLiteError) -> [JobRecord] {
        let s = try db.prepare("""
            SELECT \(JobColumn.selectList) FROM jobs WHERE state IN (\(Self.terminalList)) AND finished_at < ?1
            AND (results_removed_at IS NULL OR results_removed_at < finished_at) ORDER BY finished_at LIMIT ?2
            """)
        try s.bind([.double(cutoff), .int(Int64(limit))])
        var out: [JobRecord] = []
        while try s.step() { if let r = Self.record(s) { out.append(r) } }
        return out
    }

    public func forget(finishedBefore cutoff: Double, resultsRemoved: Bool, limit: Int) throws(SQLiteError) -> Int {
        try transaction { () throws(SQLiteError) in
            let removed = resultsRemoved ? " AND results_removed_at >= finished_at" : ""
            let which = "SELECT kind, id FROM jobs WHERE state IN (\(Self.terminalList)) AND finished_at < ?1\(removed) LIMIT ?2"
            try db.execute("CREATE TEMP TABLE IF NOT EXISTS forgetting (kind TEXT NOT NULL, id TEXT NOT NULL)")
            try db.execute("DELETE FROM forgetting")
            try db.prepare("INSERT INTO forgetting \(which)").run([.double(cutoff), .int(Int64(limit))])
            try db.execute("DELETE FROM events WHERE (kind, id) IN (SELECT kind, id FROM forgetting)")
            try db.execute("DELETE FROM jobs WHERE (kind, id) IN (SELECT kind, id FROM forgetting)")
            let n = db.changes
            try db.execute("DELETE FROM forgetting")
            return n
        }
    }

    public func outstandingDeliveries() throws(SQLiteError) -> [JobRecord] {
        let s = try db.prepare("""
            SELECT \(JobColumn.selectList) FROM jobs
            WHERE hook_state IN ('pending', 'running') OR notify_state IN ('pending', 'running') ORDER BY kind, id
            """)
        var out: [JobRecord] = []
        while try s.step() { if let r = Self.record(s) { out.append(r) } }
        return out
    }

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
    public func save(_ record: JobRecord, event: String?) throws(SQLiteError) {
        let r = Self.bounded(record)
        try transaction { () throws(SQLiteError) in
            let s = try db.cached(JobColumn.updateStatement)
            try s.run(JobColumn.updated.map { $0.write(r) } + [.text(r.key.kind), .text(r.key.id.rawValue)])
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
        let row = JobColumn.Row(s)
        guard let kind = row.text("kind"), let idText = row.text("id"), let id = try? JobID(idText),
              let state = row.text("state").flatMap(JobState.init(rawValue:)) else { return nil }
        var r = JobRecord(key: JobKey(kind: kind, id: id), state: state, registeredAt: row.double("registered_at"))
        for column in JobColumn.all { column.read(&r, row) }
        return r
    }
}
