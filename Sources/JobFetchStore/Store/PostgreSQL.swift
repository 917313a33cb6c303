import CPQ
import Glibc
import JobFetchCore

/// One libpq connection, owned by one thread. Statements go with their
/// parameters apart (`PQexecParams`, text format), never spliced into SQL.
/// A connection that breaks is re-opened by the next statement outside a
/// transaction; inside one, the statement fails and the transaction is gone.
public final class PGConnection {
    private var conn: OpaquePointer?
    /// The libpq connection string; may hold the password, so it is never printed.
    private let conninfo: String
    /// What messages name: the URI without its password.
    public let label: String
    /// Inside `transaction` (at any depth).
    public private(set) var depth = 0
    /// Set when the connection broke: the next statement outside a transaction reconnects.
    private var broken = false

    public init(conninfo: String, label: String) throws(StoreError) {
        self.conninfo = conninfo
        self.label = label
        try connect()
    }

    deinit { if let conn { PQfinish(conn) } }

    /// After a failed connection, the next attempt waits this long (monotonic
    /// seconds): a connection attempt blocks the loop, up to `connect_timeout`.
    private var nextConnectAt = 0.0
    private var lastConnectError = ""
    static let reconnectDelay = 2.0

    private func connect() throws(StoreError) {
        if let conn { PQfinish(conn) }
        conn = nil
        let now = SystemClock.monotonic()
        guard now >= nextConnectAt else {
            throw StoreError(code: 0, message: "not connected (\(lastConnectError); trying again shortly)", context: "connect to \(label)")
        }
        nextConnectAt = now + Self.reconnectDelay
        guard let c = PQconnectdb(conninfo) else {
            throw StoreError(code: 0, message: "out of memory", context: "connect to \(label)")
        }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = Self.message(PQerrorMessage(c))
            lastConnectError = message
            PQfinish(c)
            throw StoreError(code: 0, message: message, context: "connect to \(label)")
        }
        conn = c
        broken = false
        // Text out of a server's status body goes in as it is; timestamps are the store's own epoch seconds.
        _ = try? exec("SET client_encoding = 'UTF8'")
        // NOTICEs ("already exists, skipping") would reach stderr unformatted, bypassing the log.
        _ = try? exec("SET client_min_messages = warning")
    }

    static func message(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "unknown error" }
        return ServerText.escaped(String(cString: p).trimmingWhitespace())
    }

    public var inTransaction: Bool { depth > 0 }

    /// Runs one statement; `$1`… are `params`, sent as text. NUL, which
    /// PostgreSQL's text cannot hold, is sent as U+FFFD.
    @discardableResult
    public func exec(_ sql: String, _ params: [SQLValue] = []) throws(StoreError) -> PGResult {
        if broken || conn == nil || PQstatus(conn) != CONNECTION_OK {
            guard depth == 0 else {
                throw StoreError(code: 0, message: "the connection was lost inside a transaction", context: "\(label): \(sql.prefix(60))")
            }
            try connect()
        }
        guard let conn else { throw StoreError(code: 0, message: "not connected", context: label) }
        let texts: [String?] = params.map { v in
            switch v {
            case .null: return nil
            case .int(let n): return String(n)
            case .double(let d): return d.isFinite ? "\(d)" : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
            case .text(let s):
                guard s.utf8.contains(0) else { return s }
                var t = String.UnicodeScalarView()
                for c in s.unicodeScalars { t.append(c == "\0" ? "\u{FFFD}" : c) }
                return String(t)
            }
        }
        let cStrings: [UnsafeMutablePointer<CChar>?] = texts.map { $0.map { strdup($0) } ?? nil }
        defer { for p in cStrings { free(p) } }
        let result: OpaquePointer? = cStrings.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: UnsafePointer<CChar>?.self) { values in
                PQexecParams(conn, sql, Int32(params.count), nil, values.baseAddress, nil, nil, 0)
            }
        }
        guard let result else {
            broken = PQstatus(conn) != CONNECTION_OK
            throw StoreError(code: 0, message: Self.message(PQerrorMessage(conn)), context: "\(label): \(sql.prefix(60))")
        }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = Self.message(PQresultErrorMessage(result))
            PQclear(result)
            if PQstatus(conn) != CONNECTION_OK { broken = true }
            throw StoreError(code: 0, message: message, context: "\(label): \(sql.prefix(60))", sqlstate: state)
        }
        return PGResult(result)
    }

    /// Runs `body` as one transaction (nested calls join the outer one).
    public func transaction<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        if depth > 0 {
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        try exec("BEGIN")
        depth = 1
        do {
            let value = try body()
            depth = 0
            try exec("COMMIT")
            return value
        } catch {
            depth = 0
            if !broken { _ = try? exec("ROLLBACK") }
            throw error
        }
    }

    /// A text array parameter: `{"a","b"}` with `"` and `\` escaped.
    public static func array(_ items: [String]) -> SQLValue {
        var out = "{"
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            out += "\""
            for c in item.unicodeScalars {
                if c == "\"" || c == "\\" { out += "\\" }
                out.unicodeScalars.append(c)
            }
            out += "\""
        }
        return .text(out + "}")
    }
}

/// A statement's rows, read as text and converted.
public final class PGResult {
    let result: OpaquePointer
    init(_ result: OpaquePointer) { self.result = result }
    deinit { PQclear(result) }

    public var count: Int { Int(PQntuples(result)) }
    /// Rows an UPDATE or DELETE touched.
    public var changes: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }
    public func row(_ i: Int) -> PGRow { PGRow(result: self, row: Int32(i)) }
    public var rows: [PGRow] { (0..<count).map(row) }
}

/// One row of a result.
public struct PGRow: ColumnSource {
    let result: PGResult
    let row: Int32
    public func isNull(_ i: Int32) -> Bool { PQgetisnull(result.result, row, i) != 0 }
    public func text(_ i: Int32) -> String? {
        guard !isNull(i), let p = PQgetvalue(result.result, row, i) else { return nil }
        let n = Int(PQgetlength(result.result, row, i))
        return p.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
    }
    public func int(_ i: Int32) -> Int64 { text(i).flatMap { Int64($0) } ?? 0 }
    public func double(_ i: Int32) -> Double { text(i).flatMap { Double($0) } ?? 0 }
    public func bool(_ i: Int32) -> Bool { text(i) == "t" }
}
