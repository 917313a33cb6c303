import Glibc
import JobFetchCore

/// Jobs in a PostgreSQL database that several daemons share (`store =
/// postgresql://…`). A daemon claims due jobs with `FOR UPDATE SKIP LOCKED`
/// and holds each with a lease (`lease_node`, `lease_token`, `lease_until`,
/// on the database's clock) while it works on it: renewed by `maintain`,
/// released by `settle` once the job waits again. Every write of a held job
/// names its token, so a daemon whose lease ran out writes nothing; the
/// publication runs under the row's lock with the token checked (`fenced`).
public final class PostgresStore: JobStoring {
    let pg: PGConnection
    public let node: String
    let lease: Double
    public let readOnly: Bool
    /// A reader found no tables (no daemon has started against the database yet).
    public private(set) var isUnset = false
    /// The leases this daemon holds: the token of each job it claimed.
    private var held: [JobKey: Int64] = [:]
    /// The held jobs with a request or decompression in flight (kept, and renewed, past a turn).
    private var busy: Set<JobKey> = []
    /// When each held lease runs out by this daemon's own clock (renewal sent + lease): past it, it is lost.
    private var deadline: [JobKey: Double] = [:]
    private var nextMaintain = 0.0
    public private(set) var liveNodes = 1
    /// `nextDue`'s answer by state list, kept until `until` (monotonic seconds) or a claim.
    private var dueCache: [String: (at: Double?, until: Double)] = [:]
    /// Why the last `maintain` could not reach the database, once per outage.
    public private(set) var unreachable: String?
    /// What `dueKeys` took over from another daemon whose lease had run out: job, that daemon.
    public private(set) var takenOver: [(key: JobKey, from: String)] = []

    /// The database's clock, as epoch seconds: leases are compared on one clock, whatever the hosts' say.
    static let dbNow = "extract(epoch from statement_timestamp())::double precision"
    /// How long a `nextDue` answer is trusted: jobs other daemons register are seen within it.
    static let dueRefresh = 1.0
    /// Serialises migrations between daemons starting at once.
    static let migrationLock: Int64 = 0x6A6F_6266_6574_6368  // "jobfetch"

    public init(conninfo: String, label: String, node: String, lease: Double, readOnly: Bool = false) throws(StoreError) {
        pg = try PGConnection(conninfo: conninfo, label: label)
        self.node = node
        self.lease = lease
        self.readOnly = readOnly
        if readOnly {
            let exists = try pg.exec("SELECT to_regclass('jobfetch_schema') IS NOT NULL").row(0).bool(0)
            guard exists else { isUnset = true; return }
            let v = Int(try pg.exec("SELECT coalesce(max(version), 0) FROM jobfetch_schema").row(0).int(0))
            guard v <= JobStore.schemaVersion else {
                throw StoreError(code: 0, message: "database schema \(v) is newer than this program (\(JobStore.schemaVersion))", context: "open \(label)")
            }
            guard v == JobStore.schemaVersion else {
                throw StoreError(code: 0, message: "database schema \(v) is older than this program's (\(JobStore.schemaVersion)); restart a jobfetchd, which migrates it at start",
                                 context: "open \(label)")
            }
            return
        }
        try migrate()
    }

    // MARK: schema

    /// A `JobColumn` declaration in PostgreSQL's types.
    static func pgDeclaration(_ d: String) -> String {
        if d.hasPrefix("REAL") { return "DOUBLE PRECISION" + d.dropFirst(4) }
        if d.hasPrefix("INTEGER") { return "BIGINT" + d.dropFirst(7) }
        return d
    }

    /// The schema as of `JobStore.schemaVersion`'s first version here (5): every column at once.
    static var createStatements: [String] {
        let columns = JobColumn.all.map { "\($0.name) \(pgDeclaration($0.declaration))" }
        return [
            """
            CREATE TABLE jobs (
                \(columns.joined(separator: ",\n    ")),
                lease_node TEXT,
                lease_token BIGINT,
                lease_until DOUBLE PRECISION,
                PRIMARY KEY (kind, id)
            )
            """,
            // What is due, in order, for each class the engine asks about (polls, downloads):
            // a claim reads the index from its start and stops at its limit.
            "CREATE INDEX jobs_due_polls ON jobs (next_at) WHERE state IN \(stateList([.registered, .polling]))",
            "CREATE INDEX jobs_due_fetches ON jobs (next_at) WHERE state IN \(stateList([.fetching, .publishing]))",
            // A queue's rows are rewritten at every poll: dead versions at the head of the due
            // indexes would slow every claim, so the table is vacuumed often and cheaply.
            "ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0.05)",
            "CREATE SEQUENCE jobfetch_lease_tokens",
            """
            CREATE TABLE events (
                seq BIGSERIAL PRIMARY KEY,
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                message TEXT NOT NULL
            )
            """,
            "CREATE INDEX events_job ON events (kind, id, seq)",
            "CREATE TABLE jobfetch_nodes (name TEXT PRIMARY KEY, started_at DOUBLE PRECISION NOT NULL, seen_at DOUBLE PRECISION NOT NULL)",
        ]
    }
    static let firstVersion = 5
    /// Registrations at least this large refresh the planner's statistics.
    static let analyzeAfter = 1000

    /// States as an SQL list, written into the statement (they are this
    /// program's own names) so that the planner matches the partial indexes.
    static func stateList(_ states: [JobState]) -> String { "(" + states.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")" }

    /// Creates or migrates the schema in one transaction under an advisory
    /// lock: of daemons starting at once one migrates, the others wait and
    /// find it done. Each version applied is a row of `jobfetch_schema`.
    func migrate() throws(StoreError) {
        try pg.transaction { () throws(StoreError) in
            try pg.exec("SELECT pg_advisory_xact_lock($1)", [.int(Self.migrationLock)])
            try pg.exec("CREATE TABLE IF NOT EXISTS jobfetch_schema (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL, node TEXT NOT NULL)")
            let current = Int(try pg.exec("SELECT coalesce(max(version), 0) FROM jobfetch_schema").row(0).int(0))
            guard current <= JobStore.schemaVersion else {
                throw StoreError(code: 0, message: "database schema \(current) is newer than this program (\(JobStore.schemaVersion)); refusing to touch it",
                                 context: "migrate \(pg.label)")
            }
            guard current < JobStore.schemaVersion else { return }
            if current == 0 {
                for sql in Self.createStatements { try pg.exec(sql) }
                try pg.exec("INSERT INTO jobfetch_schema VALUES ($1, \(Self.dbNow), $2)", [.int(Int64(Self.firstVersion)), .text(node)])
            }
            for version in max(current, Self.firstVersion)..<JobStore.schemaVersion {
                for column in JobColumn.all where column.since == version + 1 {
                    try pg.exec("ALTER TABLE jobs ADD COLUMN \(column.name) \(Self.pgDeclaration(column.declaration))")
                }
                try pg.exec("INSERT INTO jobfetch_schema VALUES ($1, \(Self.dbNow), $2)", [.int(Int64(version + 1)), .text(node)])
            }
        }
    }

    // MARK: register and read

    /// Rows are inserted in key order, so two daemons registering
    /// overlapping files at once wait for each other instead of deadlocking.
    @discardableResult
    public func register(_ keys: [JobKey], now: Double) throws(StoreError) -> [JobKey] {
        guard !keys.isEmpty else { return [] }
        let result = try pg.transaction { () throws(StoreError) in
            try pg.exec("""
                WITH new AS (
                    INSERT INTO jobs (kind, id, state, registered_at, updated_at, next_at)
                    SELECT k, i, 'registered', $3, $3, $3 FROM unnest($1::text[], $2::text[]) AS t(k, i) ORDER BY k, i
                    ON CONFLICT DO NOTHING RETURNING kind, id),
                logged AS (INSERT INTO events (kind, id, at, message) SELECT kind, id, $3, 'registered' FROM new)
                SELECT kind, id FROM new
                """, [PGConnection.array(keys.map(\.kind)), PGConnection.array(keys.map(\.id.rawValue)), .double(now)])
        }
        let added = result.rows.compactMap(Self.key)
        if !added.isEmpty { mergeDue(now, state: .registered) }
        // Many new rows at once: the planner's statistics would still say the table is
        // small until autovacuum's next look (up to a minute), and each claim would then
        // sort every due row instead of reading the due index's first rows (67 ms, not 1).
        if added.count >= Self.analyzeAfter { _ = try? pg.exec("ANALYZE jobs") }
        return added
    }

    static func key(_ row: PGRow) -> JobKey? {
        guard let kind = row.text(0), let text = row.text(1), let id = try? JobID(text) else { return nil }
        return JobKey(kind: kind, id: id)
    }

    static let selectList = JobColumn.selectList + ", lease_node"

    static func record(_ row: PGRow) -> JobRecord? {
        let r = JobColumn.Row(row)
        guard let kind = r.text("kind"), let idText = r.text("id"), let id = try? JobID(idText),
              let state = r.text("state").flatMap(JobState.init(rawValue:)) else { return nil }
        var record = JobRecord(key: JobKey(kind: kind, id: id), state: state, registeredAt: r.double("registered_at"))
        for column in JobColumn.all { column.read(&record, r) }
        record.node = row.text(Int32(JobColumn.all.count))
        return record
    }

    private func records(_ sql: String, _ params: [SQLValue]) throws(StoreError) -> [JobRecord] {
        try pg.exec(sql, params).rows.compactMap(Self.record)
    }

    public func job(_ key: JobKey) throws(StoreError) -> JobRecord? {
        try records("SELECT \(Self.selectList) FROM jobs WHERE kind = $1 AND id = $2", [.text(key.kind), .text(key.id.rawValue)]).first
    }

    public func batch<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try pg.transaction(body)
    }

    /// `SET LOCAL synchronous_commit TO OFF`: the server answers the commit
    /// before its WAL is flushed, for this transaction only.
    public func batchUnsynced<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        guard !pg.inTransaction else { return try body() }
        return try pg.transaction { () throws(StoreError) -> T in
            _ = try pg.exec("SET LOCAL synchronous_commit TO OFF")
            return try body()
        }
    }

    public func list(kind: String?, state: JobState?) throws(StoreError) -> [JobRecord] {
        try records("SELECT \(Self.selectList) FROM jobs WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2) ORDER BY kind, registered_at, id",
                    [kind.map { .text($0) } ?? .null, state.map { .text($0.rawValue) } ?? .null])
    }

    public func counts() throws(StoreError) -> [(kind: String, state: JobState, count: Int)] {
        try pg.exec("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state").rows.compactMap { row in
            guard let k = row.text(0), let s = row.text(1).flatMap(JobState.init(rawValue:)) else { return nil }
            return (k, s, Int(row.int(2)))
        }
    }

    public func events(_ key: JobKey, limit: Int) throws(StoreError) -> [(at: Double, message: String)] {
        try pg.exec("SELECT at, message FROM (SELECT seq, at, message FROM events WHERE kind = $1 AND id = $2 ORDER BY seq DESC LIMIT $3) e ORDER BY seq",
                    [.text(key.kind), .text(key.id.rawValue), .int(Int64(limit))]).rows.map { ($0.double(0), $0.text(1) ?? "") }
    }

    static let terminalList = JobStore.terminalList

    public func finishedWithResults(before cutoff: Double, limit: Int) throws(StoreError) -> [JobRecord] {
        try records("""
            SELECT \(Self.selectList) FROM jobs WHERE state IN (\(Self.terminalList)) AND finished_at < $1
            AND (results_removed_at IS NULL OR results_removed_at < finished_at) ORDER BY finished_at LIMIT $2
            """, [.double(cutoff), .int(Int64(limit))])
    }

    public func forget(finishedBefore cutoff: Double, resultsRemoved: Bool, limit: Int) throws(StoreError) -> Int {
        try pg.transaction { () throws(StoreError) in
            let removed = resultsRemoved ? " AND results_removed_at >= finished_at" : ""
            let gone = try pg.exec("""
                WITH gone AS (
                    DELETE FROM jobs WHERE (kind, id) IN (
                        SELECT kind, id FROM jobs WHERE state IN (\(Self.terminalList)) AND finished_at < $1\(removed) LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING kind, id),
                history AS (DELETE FROM events e USING gone WHERE e.kind = gone.kind AND e.id = gone.id)
                SELECT count(*) FROM gone
                """, [.double(cutoff), .int(Int64(limit))])
            return Int(gone.row(0).int(0))
        }
    }

    /// Only this daemon's: the hooks of the jobs it published (by node name, so a restart finds them).
    public func outstandingDeliveries() throws(StoreError) -> [JobRecord] {
        try records("""
            SELECT \(Self.selectList) FROM jobs
            WHERE (hook_state IN ('pending', 'running') OR notify_state IN ('pending', 'running')) AND lease_node = $1 ORDER BY kind, id
            """, [.text(node)])
    }

    // MARK: write

    /// Writes a job back. A held job is written only under its token; one
    /// not held only while no other daemon's lease on it runs. Otherwise
    /// nothing is written and the error says who holds it.
    public func save(_ record: JobRecord, event: String?) throws(StoreError) {
        let r = Self.bounded(record)
        let values = JobColumn.updated.map { $0.write(r) }
        let n = values.count
        let set = JobColumn.updated.enumerated().map { "\($1.name) = $\($0 + 1)" }.joined(separator: ", ")
        let keyParams: [SQLValue] = [.text(r.key.kind), .text(r.key.id.rawValue)]
        try pg.transaction { () throws(StoreError) in
            let fence: String
            var params = values + keyParams
            if let token = held[r.key] {
                fence = "lease_token = $\(n + 3)"
                params.append(.int(token))
            } else {
                fence = "(lease_until IS NULL OR lease_until < \(Self.dbNow) OR lease_node = $\(n + 3))"
                params.append(.text(node))
            }
            let updated = try pg.exec("UPDATE jobs SET \(set) WHERE kind = $\(n + 1) AND id = $\(n + 2) AND \(fence)", params)
            if updated.changes == 0 {
                let holder = try pg.exec("SELECT lease_node FROM jobs WHERE kind = $1 AND id = $2", keyParams)
                guard holder.count > 0 else { return }  // forgotten meanwhile: as SQLite, nothing to write
                throw lost(r.key, holder: holder.row(0).text(0), "save")
            }
            if let event {
                try pg.exec("INSERT INTO events (kind, id, at, message) VALUES ($1, $2, $3, $4)",
                            keyParams + [.double(r.updatedAt), .text(ServerText.capped(event))])
                try pg.exec("""
                    DELETE FROM events WHERE kind = $1 AND id = $2 AND seq <= (
                    SELECT seq FROM events WHERE kind = $1 AND id = $2 ORDER BY seq DESC LIMIT 1 OFFSET $3)
                    """, keyParams + [.int(Int64(JobStore.maxEventsPerJob))])
            }
        }
        if !busy.contains(r.key) && JobState.active.contains(r.state) { mergeDue(r.nextAt, state: r.state) }
    }

    func lost(_ key: JobKey, holder: String?, _ what: String) -> StoreError {
        let who = holder.map { $0 == node ? "this node's lease on it ran out" : "node \($0) holds it" } ?? "no node holds it"
        if held.removeValue(forKey: key) != nil { busy.remove(key); deadline[key] = nil }
        return StoreError(code: 0, message: "\(who); nothing was written", context: "\(what) \(key)", leaseLost: true)
    }

    // MARK: claims

    /// Claims up to `limit` due jobs no daemon holds (or whose holder's
    /// lease ran out): each gets a new token and a lease of `lease` seconds.
    public func dueKeys(in states: [JobState], now: Double, limit: Int) -> [JobKey] {
        guard limit > 0, !readOnly else { return [] }
        dueCache[Self.cacheKey(states)] = nil
        let claimed: PGResult
        do {
            claimed = try pg.exec("""
                WITH due AS (
                    SELECT kind, id, lease_node, lease_until FROM jobs
                    WHERE state IN \(Self.stateList(states)) AND next_at <= $1 AND (lease_until IS NULL OR lease_until < \(Self.dbNow))
                    ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                UPDATE jobs j SET lease_node = $3, lease_token = nextval('jobfetch_lease_tokens'), lease_until = \(Self.dbNow) + $4
                FROM due WHERE j.kind = due.kind AND j.id = due.id
                RETURNING j.kind, j.id, j.lease_token, due.lease_node, due.lease_until IS NOT NULL
                """, [.double(now), .int(Int64(limit)), .text(node), .double(lease)])
        } catch {
            return []
        }
        var keys: [JobKey] = []
        for row in claimed.rows {
            guard let key = Self.key(row) else { continue }
            held[key] = row.int(2)
            deadline[key] = now + lease
            if row.bool(4), let from = row.text(3) { takenOver.append((key, from)) }
            keys.append(key)
        }
        return keys
    }

    /// The jobs `dueKeys` took over since the last call.
    public func takeOvers() -> [(key: JobKey, from: String)] {
        defer { takenOver = [] }
        return takenOver
    }

    static func cacheKey(_ states: [JobState]) -> String { states.map(\.rawValue).joined(separator: ",") }

    /// The soonest `next_at` among the jobs in `states` no daemon holds, asked
    /// of the database at most once a `dueRefresh` (and after each claim).
    public func nextDue(in states: [JobState]) -> Double? {
        guard !readOnly else { return nil }
        let key = Self.cacheKey(states)
        let mono = SystemClock.monotonic()
        let wallNow = SystemClock.now()
        if let c = dueCache[key], mono < c.until {
            return min(c.at ?? .infinity, wallNow + (c.until - mono))
        }
        let at: Double?
        do {
            let row = try pg.exec("""
                SELECT next_at FROM jobs WHERE state IN \(Self.stateList(states)) AND (lease_until IS NULL OR lease_until < \(Self.dbNow))
                ORDER BY next_at LIMIT 1
                """)
            at = row.count == 0 || row.row(0).isNull(0) ? nil : row.row(0).double(0)
        } catch {
            at = nil
        }
        dueCache[key] = (at, mono + Self.dueRefresh)
        return min(at ?? .infinity, wallNow + Self.dueRefresh)
    }

    /// A job of this daemon's became due at `at`: the cached answers take it in.
    private func mergeDue(_ at: Double, state: JobState) {
        for (k, c) in dueCache where k.split(separator: ",").contains(Substring(state.rawValue)) {
            dueCache[k] = (min(c.at ?? .infinity, at), c.until)
        }
    }

    public func claim(_ key: JobKey) { if held[key] != nil { busy.insert(key) } }
    public func unclaim(_ key: JobKey) { busy.remove(key) }

    /// Releases the leases of the held jobs with nothing in flight (they wait again, for any daemon).
    public func settle() {
        let idle = held.filter { !busy.contains($0.key) }
        guard !idle.isEmpty else { return }
        do {
            try pg.exec("UPDATE jobs j SET lease_until = NULL FROM \(Self.heldRows) WHERE \(Self.heldMatch)", Self.heldParams(idle.map { ($0.key, $0.value) }))
        } catch {
            // Not released: the leases run out by themselves.
        }
        for key in idle.keys { held[key] = nil; deadline[key] = nil }
    }

    /// Held jobs as rows to join on, by primary key: `$1` kinds, `$2` IDs, `$3` tokens.
    static let heldRows = "unnest($1::text[], $2::text[], $3::bigint[]) AS h(kind, id, token)"
    static let heldMatch = "j.kind = h.kind AND j.id = h.id AND j.lease_token = h.token"
    static func heldParams(_ jobs: [(JobKey, Int64)]) -> [SQLValue] {
        [PGConnection.array(jobs.map(\.0.kind)), PGConnection.array(jobs.map(\.0.id.rawValue)),
         .text("{" + jobs.map { String($0.1) }.joined(separator: ",") + "}")]
    }

    /// Publication's fence: the job's row locked and this daemon's token on it, still in lease.
    public func fenced<T>(_ key: JobKey, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try pg.transaction { () throws(StoreError) in
            let rows = try pg.exec("SELECT lease_token, lease_node, lease_until >= \(Self.dbNow) FROM jobs WHERE kind = $1 AND id = $2 FOR UPDATE",
                                   [.text(key.kind), .text(key.id.rawValue)])
            guard rows.count > 0 else { throw StoreError(code: 0, message: "the job is no longer in the store", context: "publish \(key)") }
            let row = rows.row(0)
            guard let token = held[key], !row.isNull(0), row.int(0) == token, row.bool(2) else {
                throw lost(key, holder: row.text(1), "publish")
            }
            return try body()
        }
    }

    // MARK: leases

    public var maintainAt: Double? { readOnly ? nil : nextMaintain }

    /// Every `lease`/3: renews the leases of the busy jobs and this node's
    /// heartbeat, and counts the live nodes. A lease the database no longer
    /// has for this daemon, or one whose renewal could not be sent before
    /// its deadline, is lost: the caller stops that job's work.
    public func maintain(now: Double) -> [JobKey] {
        guard !readOnly, now >= nextMaintain else { return [] }
        nextMaintain = now + lease / 3
        var lost: [JobKey] = []
        do {
            let working = busy.compactMap { key in held[key].map { (key, $0) } }
            let renewed = try pg.exec("""
                UPDATE jobs j SET lease_until = \(Self.dbNow) + $4 FROM \(Self.heldRows)
                WHERE \(Self.heldMatch) AND j.lease_until >= \(Self.dbNow) RETURNING j.lease_token
                """, Self.heldParams(working) + [.double(lease)])
            let kept = Set(renewed.rows.map { $0.int(0) })
            for key in busy where !kept.contains(held[key] ?? -1) { lost.append(key) }
            for key in busy where kept.contains(held[key] ?? -1) { deadline[key] = now + lease }
            try pg.exec("""
                INSERT INTO jobfetch_nodes (name, started_at, seen_at) VALUES ($1, \(Self.dbNow), \(Self.dbNow))
                ON CONFLICT (name) DO UPDATE SET seen_at = \(Self.dbNow)
                """, [.text(node)])
            liveNodes = max(1, Int(try pg.exec("SELECT count(*) FROM jobfetch_nodes WHERE seen_at >= \(Self.dbNow) - $1", [.double(lease)]).row(0).int(0)))
            unreachable = nil
        } catch {
            unreachable = error.description
            // Without the database no lease is renewed: those past their deadline are gone.
            for key in busy where (deadline[key] ?? 0) <= now { lost.append(key) }
            nextMaintain = now + 1
        }
        for key in lost { held[key] = nil; busy.remove(key); deadline[key] = nil }
        return lost
    }

    /// Whether this daemon's lease on `key` still runs by its own clock: a
    /// daemon paused past it (SIGSTOP, a stalled VM) finds the answers that
    /// arrived meanwhile are no longer its to act on, before `maintain` runs.
    public func holds(_ key: JobKey, now: Double) -> Bool { (deadline[key] ?? 0) > now }
}

