import ArgumentParser
import JobFetchCore
import JobFetchStore

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one job in detail, with its history.")

    @OptionGroup var job: JobArguments

    @Flag(help: "Print JSON: the list fields plus \"history\" and the last \"status\" document.")
    var json = false

    func run() throws {
        let config = try job.options.load()
        let (store, r) = try job.registered(config)
        let key = r.key
        let history = try store.events(key)
        if json {
            guard case .object(var members) = JobReport.json(r, outputDir: config.daemon.outputDir) else { return }
            members.append(JSONMember("history", History.json(history)))
            let status: JSONValue = r.lastStatus.flatMap { try? JSONParser.parse($0) }.map(SignatureRedactor.redact) ?? .null
            members.append(JSONMember("status", status))
            print(JSONWriter.string(.object(members), pretty: true))
            return
        }
        var lines: [String] = []
        lines.append("job:         \(key)")
        lines.append("state:       \(r.state.rawValue)" + (r.apiStatus.map { " (API status: \($0))" } ?? ""))
        if let p = JobReport.percent(r) { lines.append("progress:    \(Int(p.rounded()))%") }
        if r.bytesDone > 0 { lines.append("bytes:       \(Units.formatBytes(r.bytesDone))" + (r.bytesTotal.map { " of \(Units.formatBytes($0))" } ?? "")) }
        lines.append("polls:       \(r.polls)" + (r.lastHTTPStatus.map { ", last HTTP \($0)" } ?? ""))
        if r.attempts > 0 { lines.append("retries:     \(r.attempts) in a row") }
        if let e = r.lastError { lines.append("last error:  \(e)") }
        if let reason = r.reason { lines.append("reason:      \(reason)") }
        for w in r.warnings { lines.append("warning:     \(w)") }
        if let summary = r.summary { lines.append("summary:     \(summary)") }
        if r.retries > 0 { lines.append("retried:     \(r.retries) time(s) by an operator") }
        lines.append("registered:  \(Timestamp.iso8601(r.registeredAt))")
        if r.state.isTerminal {
            let dir = "\(config.daemon.outputDir)/\(key.kind)/\(key.id)"
            lines.append("finished:    \(r.finishedAt.map(Timestamp.iso8601) ?? "-")")
            if let gone = r.resultsRemovedAt, gone >= (r.finishedAt ?? 0) {
                lines.append("output:      \(dir) (removed \(Timestamp.iso8601(gone)) by keep_results)")
            } else {
                lines.append("output:      \(dir)")
            }
            // The published files, as job.json lists them.
            if let bytes = try? FileIO.readAll(dir + "/job.json"), case .array(let files)? = (try? JSONParser.parse(bytes))?["files"] {
                for f in files {
                    let size = f["bytes"]?.doubleValue.flatMap { Int64(exactly: $0) }.map(Units.formatBytes) ?? "?"
                    lines.append("file:        \(f["name"]?.scalarText ?? "?")  \(size)  sha256 \(f["sha256"]?.scalarText ?? "?")")
                }
            }
        } else {
            lines.append("next action: \(Timestamp.iso8601(r.nextAt))")
        }
        if let d = r.hook { lines.append("on_complete: \(JobReport.deliveryLine(d))") }
        if let d = r.notify { lines.append("webhook:     \(JobReport.deliveryLine(d))") }
        lines.append("history:")
        for h in history { lines.append("  \(Timestamp.iso8601(h.at))  \(h.message)") }
        // Status values, reasons, warnings and history quote servers: each line
        // is escaped so that none can add lines or drive the terminal.
        print(lines.map(ServerText.escaped).joined(separator: "\n"))
    }
}
