import JobFetchCore
/// The `jobs` table's columns, declared once: the name, the SQL type, the
/// schema version that added it, and how a record's field is written and
/// read. The SELECT list, the UPDATE and the row reader are built from this
/// list, and a column read by name; adding a field to `JobRecord` is one
/// line here (with the next `since`, which makes its migration).
struct JobColumn: Sendable {
    let name: String
    /// The type and default, as `ALTER TABLE ADD COLUMN` takes it.
    let declaration: String
    /// The schema version that added the column (1: the first table).
    let since: Int
    /// Written by `save` (the key and `registered_at` never change).
    let updated: Bool
    let write: @Sendable (JobRecord) -> SQLValue
    let read: @Sendable (inout JobRecord, Row) -> Void

    init(_ name: String, _ declaration: String, since: Int = 1, updated: Bool = true,
         write: @escaping @Sendable (JobRecord) -> SQLValue, read: @escaping @Sendable (inout JobRecord, Row) -> Void) {
        self.name = name
        self.declaration = declaration
        self.since = since
        self.updated = updated
        self.write = write
        self.read = read
    }

    static func text(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
    static func real(_ d: Double?) -> SQLValue { d.map { .double($0) } ?? .null }
    static func int(_ i: Int64?) -> SQLValue { i.map { .int($0) } ?? .null }

    static let all: [JobColumn] = [
        JobColumn("kind", "TEXT NOT NULL", updated: false, write: { .text($0.key.kind) }, read: { _, _ in }),
        JobColumn("id", "TEXT NOT NULL", updated: false, write: { .text($0.key.id.rawValue) }, read: { _, _ in }),
        JobColumn("state", "TEXT NOT NULL", write: { .text($0.state.rawValue) }, read: { _, _ in }),
        JobColumn("registered_at", "REAL NOT NULL", updated: false, write: { .double($0.registeredAt) }, read: { _, _ in }),
        JobColumn("updated_at", "REAL NOT NULL", write: { .double($0.updatedAt) }, read: { $0.updatedAt = $1.double("updated_at") }),
        JobColumn("next_at", "REAL NOT NULL", write: { .double($0.nextAt) }, read: { $0.nextAt = $1.double("next_at") }),
        JobColumn("attempts", "INTEGER NOT NULL DEFAULT 0", write: { .int(Int64($0.attempts)) }, read: { $0.attempts = Int($1.int("attempts")) }),
        JobColumn("polls", "INTEGER NOT NULL DEFAULT 0", write: { .int(Int64($0.polls)) }, read: { $0.polls = Int($1.int("polls")) }),
        JobColumn("last_http_status", "INTEGER", write: { int($0.lastHTTPStatus.map(Int64.init)) },
                  read: { $0.lastHTTPStatus = $1.optionalInt("last_http_status").map { Int($0) } }),
        JobColumn("last_error", "TEXT", write: { text($0.lastError) }, read: { $0.lastError = $1.text("last_error") }),
        JobColumn("last_status", "TEXT", write: { text($0.lastStatus) }, read: { $0.lastStatus = $1.text("last_status") }),
        JobColumn("api_status", "TEXT", write: { text($0.apiStatus) }, read: { $0.apiStatus = $1.text("api_status") }),
        JobColumn("progress", "REAL", write: { real($0.progress) }, read: { $0.progress = $1.optionalDouble("progress") }),
        JobColumn("bytes_done", "INTEGER NOT NULL DEFAULT 0", write: { .int($0.bytesDone) }, read: { $0.bytesDone = $1.int("bytes_done") }),
        JobColumn("bytes_total", "INTEGER", write: { int($0.bytesTotal) }, read: { $0.bytesTotal = $1.optionalInt("bytes_total") }),
        JobColumn("result_url", "TEXT", write: { text($0.resultURL) }, read: { $0.resultURL = $1.text("result_url") }),
        JobColumn("reason", "TEXT", write: { text($0.reason) }, read: { $0.reason = $1.text("reason") }),
        JobColumn("warnings", "TEXT NOT NULL DEFAULT '[]'", write: { .text(JSONWriter.string(.array($0.warnings.map { .string($0) }))) },
                  read: { r, row in
                      if let w = row.text("warnings"), case .array(let items)? = try? JSONParser.parse(w) { r.warnings = items.compactMap(\.scalarText) }
                  }),
        JobColumn("finished_at", "REAL", write: { real($0.finishedAt) }, read: { $0.finishedAt = $1.optionalDouble("finished_at") }),
        JobColumn("not_found_since", "REAL", write: { real($0.notFoundSince) }, read: { $0.notFoundSince = $1.optionalDouble("not_found_since") }),
        JobColumn("outcome", "TEXT", write: { text($0.outcome?.rawValue) }, read: { $0.outcome = $1.text("outcome").flatMap(Outcome.init(rawValue:)) }),
        JobColumn("summary", "TEXT", since: 2, write: { text($0.summary) }, read: { $0.summary = $1.text("summary") }),
        JobColumn("page_next", "INTEGER", since: 2, write: { int($0.pageNext.map(Int64.init)) }, read: { $0.pageNext = $1.optionalInt("page_next").map { Int($0) } }),
        JobColumn("timeout_from", "REAL", since: 2, write: { real($0.timeoutFrom) }, read: { $0.timeoutFrom = $1.optionalDouble("timeout_from") }),
        JobColumn("retries", "INTEGER NOT NULL DEFAULT 0", since: 2, write: { .int(Int64($0.retries)) }, read: { $0.retries = Int($1.int("retries")) }),
        JobColumn("rate", "REAL", since: 3, write: { real($0.rate) }, read: { $0.rate = $1.optionalDouble("rate") }),
        JobColumn("results_removed_at", "REAL", since: 4, write: { real($0.resultsRemovedAt) },
                  read: { $0.resultsRemovedAt = $1.optionalDouble("results_removed_at") }),
    ] + delivery("hook", \.hook) + delivery("notify", \.notify)

    /// The columns of a `Delivery` (since 5): `<name>_state` (NULL: none), its attempts, due time and last run.
    static func delivery(_ name: String, _ field: WritableKeyPath<JobRecord, Delivery?> & Sendable) -> [JobColumn] {
        [
            JobColumn("\(name)_state", "TEXT", since: 5, write: { text($0[keyPath: field]?.state.rawValue) }, read: { r, row in
                r[keyPath: field] = row.text("\(name)_state").flatMap(Delivery.State.init(rawValue:)).map { Delivery(state: $0, nextAt: 0) }
            }),
            JobColumn("\(name)_attempts", "INTEGER NOT NULL DEFAULT 0", since: 5, write: { .int(Int64($0[keyPath: field]?.attempts ?? 0)) },
                      read: { r, row in r[keyPath: field]?.attempts = Int(row.int("\(name)_attempts")) }),
            JobColumn("\(name)_next_at", "REAL", since: 5, write: { real($0[keyPath: field]?.nextAt) },
                      read: { r, row in r[keyPath: field]?.nextAt = row.optionalDouble("\(name)_next_at") ?? 0 }),
            JobColumn("\(name)_last", "TEXT", since: 5, write: { text($0[keyPath: field]?.last) },
                      read: { r, row in r[keyPath: field]?.last = row.text("\(name)_last") }),
            JobColumn("\(name)_last_at", "REAL", since: 5, write: { real($0[keyPath: field]?.lastAt) },
                      read: { r, row in r[keyPath: field]?.lastAt = row.optionalDouble("\(name)_last_at") }),
        ]
    }

    static let selectList = all.map(\.name).joined(separator: ", ")
    static let updated = all.filter(\.updated)
    static let updateStatement = "UPDATE jobs SET " + updated.map { "\($0.name) = ?" }.joined(separator: ", ") + " WHERE kind = ? AND id = ?"
    /// Each column's position in `selectList`.
    static let index = Dictionary(uniqueKeysWithValues: all.enumerated().map { ($1.name, Int32($0)) })

    /// A row of `SELECT selectList`, read by column name.
    struct Row {
        let s: any ColumnSource
        init(_ s: any ColumnSource) { self.s = s }
        private func at(_ name: String) -> Int32 {
            guard let i = JobColumn.index[name] else { preconditionFailure("no column \(name) in JobColumn.all") }
            return i
        }
        func text(_ name: String) -> String? { s.text(at(name)) }
        func double(_ name: String) -> Double { s.double(at(name)) }
        func optionalDouble(_ name: String) -> Double? { s.optionalDouble(at(name)) }
        func int(_ name: String) -> Int64 { s.int(at(name)) }
        func optionalInt(_ name: String) -> Int64? { s.optionalInt(at(name)) }
    }
}

/// A result row whose columns are read by position: SQLite's statement, PostgreSQL's result row.
protocol ColumnSource {
    func isNull(_ i: Int32) -> Bool
    func int(_ i: Int32) -> Int64
    func double(_ i: Int32) -> Double
    func text(_ i: Int32) -> String?
}

extension ColumnSource {
    func optionalInt(_ i: Int32) -> Int64? { isNull(i) ? nil : int(i) }
    func optionalDouble(_ i: Int32) -> Double? { isNull(i) ? nil : double(i) }
}
