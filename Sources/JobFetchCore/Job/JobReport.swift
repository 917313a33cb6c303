/// How `jobfetchctl` shows jobs: the stable `--json` form (documented in the
/// README) and the human table.
public enum JobReport {
    public static func json(_ r: JobRecord, outputDir: String) -> JSONValue {
        func num(_ d: Double?) -> JSONValue { d.map { .number(String(format3: $0)) } ?? .null }
        func str(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
        func time(_ t: Double?) -> JSONValue { t.map { .string(Timestamp.iso8601($0)) } ?? .null }
        return .object([
            JSONMember("kind", .string(r.key.kind)),
            JSONMember("id", .string(r.key.id.rawValue)),
            JSONMember("state", .string(r.state.rawValue)),
            JSONMember("node", str(r.node)),
            JSONMember("api_status", str(r.apiStatus)),
            JSONMember("progress", num(percent(r).map { $0 / 100 })),
            JSONMember("bytes_done", .int(r.bytesDone)),
            JSONMember("bytes_total", r.bytesTotal.map { .int($0) } ?? .null),
            JSONMember("rate", num(r.state == .fetching ? r.rate : nil)),
            JSONMember("eta_seconds", num(eta(r))),
            JSONMember("polls", .int(r.polls)),
            JSONMember("attempts", .int(r.attempts)),
            JSONMember("last_http_status", r.lastHTTPStatus.map { .int($0) } ?? .null),
            JSONMember("last_error", str(r.lastError)),
            JSONMember("reason", str(r.reason)),
            JSONMember("warnings", .array(r.warnings.map { .string($0) })),
            JSONMember("retries", .int(r.retries)),
            JSONMember("registered_at", time(r.registeredAt)),
            JSONMember("updated_at", time(r.updatedAt)),
            JSONMember("next_at", r.state.isTerminal ? .null : time(r.nextAt)),
            JSONMember("finished_at", time(r.finishedAt)),
            JSONMember("output", r.state.isTerminal ? .string("\(outputDir)/\(r.key.kind)/\(r.key.id)") : .null),
            JSONMember("hook", delivery(r.hook)),
            JSONMember("webhook", delivery(r.notify)),
        ])
    }

    /// An `on_complete` hook's or a webhook's state and last run, or null when the job has none.
    static func delivery(_ d: Delivery?) -> JSONValue {
        guard let d else { return .null }
        return .object([
            JSONMember("state", .string(d.state.rawValue)),
            JSONMember("attempts", .int(d.attempts)),
            JSONMember("last", d.last.map { .string($0) } ?? .null),
            JSONMember("last_at", d.lastAt.map { .string(Timestamp.iso8601($0)) } ?? .null),
            JSONMember("next_at", d.state == .pending ? .string(Timestamp.iso8601(d.nextAt)) : .null),
        ])
    }

    /// One line for `status`: the state, the attempts, the last run and when.
    public static func deliveryLine(_ d: Delivery) -> String {
        let last = d.last.map { "last: \($0)" + (d.lastAt.map { " at \(Timestamp.iso8601($0))" } ?? "") }
        let attempts = "\(d.attempts) attempt\(d.attempts == 1 ? "" : "s")"
        switch d.state {
        case .pending: return "pending, due \(Timestamp.iso8601(d.nextAt))" + (last.map { "; \(attempts), \($0)" } ?? "")
        case .running: return "running (attempt \(d.attempts))" + (last.map { "; \($0)" } ?? "")
        case .succeeded, .failed: return "\(d.state.rawValue) after \(attempts)" + (last.map { "; \($0)" } ?? "")
        }
    }

    /// Progress as a percentage. APIs report a fraction (0–1) or a percentage (0–100).
    public static func percent(_ r: JobRecord) -> Double? {
        if r.state == .succeeded { return 100 }
        guard let p = r.progress, p.isFinite, p >= 0 else { return nil }
        return p <= 1 ? p * 100 : min(p, 100)
    }

    /// Seconds left for a download, from its rate; nil when unknown.
    public static func eta(_ r: JobRecord) -> Double? {
        guard r.state == .fetching, let rate = r.rate, rate > 0, let total = r.bytesTotal, total >= r.bytesDone else { return nil }
        return Double(total - r.bytesDone) / rate
    }

    /// The human table; `colour` adds ANSI colours to the state (a terminal).
    /// Server text in a note is escaped: it can neither split a row nor drive the terminal.
    public static func table(_ records: [JobRecord], now: Double, colour: Bool = false) -> String {
        // A shared store's jobs say which daemon holds (or last held) them.
        let nodes = records.contains { $0.node != nil }
        var rows: [[String]] = [["KIND", "ID", "STATE"] + (nodes ? ["NODE"] : []) + ["PROGRESS", "BYTES", "RATE", "ETA", "AGE", "NOTE"]]
        for r in records {
            let progress = percent(r).map { "\(Int($0.rounded()))%" } ?? "-"
            var bytes = r.bytesDone > 0 ? Units.formatBytes(r.bytesDone) : "-"
            if let total = r.bytesTotal, r.state == .fetching, total > 0 { bytes = "\(Units.formatBytes(r.bytesDone))/\(Units.formatBytes(total))" }
            let rate = r.state == .fetching ? r.rate.map { Units.formatBytes(Int64($0)) + "/s" } ?? "-" : "-"
            let eta = eta(r).map { Units.formatDuration(max(1, $0.rounded())) } ?? "-"
            let note = r.reason ?? r.lastError ?? r.apiStatus.map { "API: \($0)" } ?? ""
            rows.append([r.key.kind, r.key.id.rawValue, r.state.rawValue] + (nodes ? [r.node.map(ServerText.escaped) ?? "-"] : []) + [progress, bytes, rate, eta,
                         Units.formatDuration(max(0, now - r.registeredAt)), String(ServerText.escaped(note).prefix(60))])
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.enumerated().map { n, row in
            row.enumerated().map { i, c in
                let padded = i == row.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count)
                guard colour, n > 0, i == 2, let code = JobState(rawValue: c).map(stateColour) else { return padded }
                return "\u{1B}[\(code)m\(c)\u{1B}[0m" + String(repeating: " ", count: widths[i] - c.count)
            }.joined(separator: "  ").trimmingWhitespace()
        }.joined(separator: "\n")
    }

    /// ANSI colour codes: green done, red failed, yellow cancelled, cyan moving.
    static func stateColour(_ s: JobState) -> Int {
        switch s {
        case .succeeded: return 32
        case .failed: return 31
        case .cancelled: return 33
        case .fetching, .publishing: return 36
        case .registered, .polling: return 34
        }
    }
}

extension String {
    /// Total: a rate that decays towards zero makes an ETA as large as a double gets.
    init(format3 value: Double) {
        let v = value.isNaN ? 0 : Swift.min(Swift.max(value, -1e12), 1e12)
        let scaled = Int((v * 1000).rounded())
        let frac = abs(scaled % 1000)
        self = "\(scaled / 1000).\(frac < 10 ? "00" : frac < 100 ? "0" : "")\(frac)"
    }
}
