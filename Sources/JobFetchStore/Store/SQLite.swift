import CSQLite
import JobFetchCore

/// SQLite's errors are the store's: a result code with the database's message.
public typealias SQLiteError = StoreError

extension StoreError {
    public var isBusy: Bool { code & 0xFF == SQLITE_BUSY || code & 0xFF == SQLITE_LOCKED }
}

/// One connection, owned by one thread (not Sendable).
public final class SQLiteDatabase {
    let handle: OpaquePointer
    public let path: String

    public init(path: String, readOnly: Bool) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: msg, context: "open \(path)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 5000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(handle) }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    public func execute(_ sql: String) throws(SQLiteError) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw SQLiteError(code: rc, message: msg, context: "execute \(sql.prefix(60))")
        }
    }

    /// Statements of the hot paths, compiled once. Each use binds (which
    /// resets) and must end with `reset()`, so no read stays open.
    private var cache: [String: Statement] = [:]
    private var depth = 0

    /// Drops the compiled statements (each holds the database): the owner
    /// calls it when done, so the connection closes rather than leaks.
    public func dropCache() { cache = [:] }

    public func cached(_ sql: String) throws(SQLiteError) -> Statement {
        if let s = cache[sql] { return s }
        let s = try prepare(sql)
        cache[sql] = s
        return s
    }

    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "prepare \(sql.prefix(60))") }
        return Statement(db: self, stmt: stmt, sql: sql)
    }

    /// Runs `body` in one IMMEDIATE transaction; rolls back if it throws.
    /// Inside another transaction it is part of that one (one commit, one
    /// fsync for a batch of updates).
    public func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        if depth > 0 {
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        try execute("BEGIN IMMEDIATE")
        depth = 1
        defer { depth = 0 }
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }
    /// Inside `transaction` (at any depth).
    public var inTransaction: Bool { depth > 0 }
}

public enum SQLValue {
    case null, int(Int64), double(Double), text(String)
}

public final class Statement: ColumnSource {
    let db: SQLiteDatabase
    let stmt: OpaquePointer
    let sql: String

    init(db: SQLiteDatabase, stmt: OpaquePointer, sql: String) { self.db = db; self.stmt = stmt; self.sql = sql }
    deinit { sqlite3_finalize(stmt) }

    public func bind(_ values: [SQLValue]) throws(SQLiteError) {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .int(let n): rc = sqlite3_bind_int64(stmt, idx, n)
            case .double(let d): rc = sqlite3_bind_double(stmt, idx, d)
            case .text(let s):
                // With its byte count: text from outside may hold a NUL, which
                // a C-string bind (-1) would cut the stored copy short at.
                var copy = s
                rc = copy.withUTF8 { b in
                    b.withMemoryRebound(to: CChar.self) { c in
                        if let base = c.baseAddress { return jf_sqlite_bind_text(stmt, idx, base, Int32(clamping: c.count)) }
                        return jf_sqlite_bind_text(stmt, idx, "", 0)
                    }
                }
            }
            guard rc == SQLITE_OK else { throw db.error(rc, "bind \(sql.prefix(60))") }
        }
    }

    /// Steps once: true while there is a row.
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw db.error(rc, "step \(sql.prefix(60))")
    }

    public func run(_ values: [SQLValue]) throws(SQLiteError) {
        try bind(values)
        while try step() {}
    }

    /// Ends a use: the statement lets go of its read snapshot.
    public func reset() { sqlite3_reset(stmt) }

    public func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
    public func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    public func double(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
    /// The whole text, NUL bytes included (read by its byte count).
    public func text(_ i: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, i) else { return nil }
        let n = Int(sqlite3_column_bytes(stmt, i))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }
}
