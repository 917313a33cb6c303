import Foundation
import Glibc
import JobFetchCore
import Testing

/// The Prometheus textfile, as node_exporter's textfile collector reads it.
@Suite(.serialized) struct MetricsEndToEndTests {
    @Test func metricsFileCountsJobsPollsBytesAndOutcomes() throws {
        let inst = try Installation(daemonLines: "metrics_file = {ROOT}/metrics/jobfetchd.prom")
        try FileIO.makeDirectories(inst.root + "/metrics")
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-m", "err-m", "flaky-m"]).status == 0)
        for id in ["done-1-m", "err-m", "flaky-m"] { #expect(try inst.waitForResult(id)) }
        let path = inst.root + "/metrics/jobfetchd.prom"
        // Rewritten (atomically: a rename into the directory) within a second of a change.
        var text = ""
        _ = try Inotify.wait(until: {
            text = (try? String(decoding: FileIO.readAll(path), as: UTF8.self)) ?? ""
            return text.contains("jobfetchd_jobs_finished_total{kind=\"dataset\",outcome=\"failed\"} 1")
                && text.contains("jobfetchd_jobs{kind=\"dataset\",state=\"succeeded\"} 2")
        }, in: inst.root + "/metrics", mask: UInt32(IN_MOVED_TO), timeout: 30)
        #expect(text.contains("# TYPE jobfetchd_polls_total counter"))
        #expect(text.contains("jobfetchd_jobs{kind=\"dataset\",state=\"failed\"} 1"), "\(text)")
        #expect(text.contains("jobfetchd_jobs_finished_total{kind=\"dataset\",outcome=\"succeeded\"} 2"))
        #expect(text.contains("jobfetchd_polls_total{kind=\"dataset\",code=\"503\"} 1"), "flaky-m's first answer")
        #expect(text.contains("jobfetchd_polls_total{kind=\"dataset\",code=\"200\"}"))
        // Two CSVs of 50 rows each were downloaded.
        let bytes = text.split(separator: "\n").first { $0.hasPrefix("jobfetchd_downloaded_bytes_total{kind=\"dataset\"}") }
            .flatMap { Int64($0.split(separator: " ").last ?? "") } ?? 0
        let expected = (FileIO.size("\(inst.output)/dataset/done-1-m/done-1-m.csv") ?? -1) + (FileIO.size("\(inst.output)/dataset/flaky-m/flaky-m.csv") ?? -1)
        #expect(bytes == expected)
        #expect(!text.contains(inst.apiKey))
    }
}
