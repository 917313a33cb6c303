import JobFetchCore
/// Counters for Prometheus, kept in memory (they restart at zero with the
/// daemon, as Prometheus counters may) and written as a text file for
/// node_exporter's textfile collector: atomically (temp file, rename).
public struct Metrics: Sendable {
    struct Key: Hashable, Sendable, Comparable {
        var kind: String
        var label: String
        static func < (a: Key, b: Key) -> Bool { (a.kind, a.label) < (b.kind, b.label) }
    }

    var polls: [Key: Int] = [:]
    var bytes: [String: Int64] = [:]
    var transferFailures: [String: Int] = [:]
    var publishFailures: [String: Int] = [:]
    var finished: [Key: Int] = [:]
    var removedResults = 0
    var forgottenJobs = 0
    var hookRuns: [Key: Int] = [:]
    var webhookDeliveries: [Key: Int] = [:]
    /// Something changed since the file was last written.
    var dirty = true

    public init() {}

    /// A status request's answer: its HTTP status, or `error` when none came.
    mutating func poll(_ kind: String, status: Int) {
        polls[Key(kind: kind, label: status == 0 ? "error" : String(status)), default: 0] += 1
        dirty = true
    }

    mutating func downloaded(_ kind: String, bytes n: Int64) {
        guard n > 0 else { return }
        bytes[kind, default: 0] += n
        dirty = true
    }

    mutating func transferFailed(_ kind: String) { transferFailures[kind, default: 0] += 1; dirty = true }
    mutating func publishFailed(_ kind: String) { publishFailures[kind, default: 0] += 1; dirty = true }
    mutating func resultsRemoved(_ n: Int) { removedResults += n; dirty = true }
    mutating func forgotten(_ n: Int) { forgottenJobs += n; dirty = true }
    mutating func hookRan(_ kind: String, ok: Bool) { hookRuns[Key(kind: kind, label: ok ? "succeeded" : "failed"), default: 0] += 1; dirty = true }
    mutating func webhookSent(_ kind: String, ok: Bool) {
        webhookDeliveries[Key(kind: kind, label: ok ? "succeeded" : "failed"), default: 0] += 1
        dirty = true
    }
    mutating func finished(_ kind: String, outcome: Outcome) {
        finished[Key(kind: kind, label: outcome.rawValue), default: 0] += 1
        dirty = true
    }

    /// The exposition text; `jobs` are the store's counts by kind and state.
    func render(jobs: [(kind: String, state: JobState, count: Int)], startedAt: Double) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("jobfetchd_up", "gauge", "1 while jobfetchd runs.")
        out += "jobfetchd_up 1\n"
        family("jobfetchd_start_time_seconds", "gauge", "When the daemon started (Unix time).")
        out += "jobfetchd_start_time_seconds \(Int(startedAt))\n"
        family("jobfetchd_jobs", "gauge", "Jobs in the state database by kind and state.")
        for j in jobs.sorted(by: { ($0.kind, $0.state.rawValue) < ($1.kind, $1.state.rawValue) }) {
            out += "jobfetchd_jobs{kind=\"\(j.kind)\",state=\"\(j.state.rawValue)\"} \(j.count)\n"
        }
        family("jobfetchd_polls_total", "counter", "Status requests by kind and HTTP status (\"error\": no answer).")
        for (k, v) in polls.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_polls_total{kind=\"\(k.kind)\",code=\"\(k.label)\"} \(v)\n" }
        family("jobfetchd_downloaded_bytes_total", "counter", "Bytes of results received, by kind.")
        for (k, v) in bytes.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_downloaded_bytes_total{kind=\"\(k)\"} \(v)\n" }
        family("jobfetchd_transfer_failures_total", "counter", "Downloads that stopped with an error (retried or failed), by kind.")
        for (k, v) in transferFailures.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_transfer_failures_total{kind=\"\(k)\"} \(v)\n" }
        family("jobfetchd_publish_failures_total", "counter", "Attempts to publish a job's directory that failed, by kind.")
        for (k, v) in publishFailures.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_publish_failures_total{kind=\"\(k)\"} \(v)\n" }
        family("jobfetchd_jobs_finished_total", "counter", "Jobs published, by kind and outcome.")
        for (k, v) in finished.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_jobs_finished_total{kind=\"\(k.kind)\",outcome=\"\(k.label)\"} \(v)\n" }
        family("jobfetchd_results_removed_total", "counter", "Published directories removed by keep_results.")
        out += "jobfetchd_results_removed_total \(removedResults)\n"
        family("jobfetchd_jobs_forgotten_total", "counter", "Finished jobs removed from the state database by forget_after.")
        out += "jobfetchd_jobs_forgotten_total \(forgottenJobs)\n"
        family("jobfetchd_hook_runs_total", "counter", "on_complete runs by kind and result (a failed run may be retried).")
        for (k, v) in hookRuns.sorted(by: { $0.key < $1.key }) { out += "jobfetchd_hook_runs_total{kind=\"\(k.kind)\",result=\"\(k.label)\"} \(v)\n" }
        family("jobfetchd_webhook_requests_total", "counter", "notify_url requests by kind and result (a failed one may be retried).")
        for (k, v) in webhookDeliveries.sorted(by: { $0.key < $1.key }) {
            out += "jobfetchd_webhook_requests_total{kind=\"\(k.kind)\",result=\"\(k.label)\"} \(v)\n"
        }
        return out
    }
}
