import Foundation
import Glibc
import JobFetchCore
import Testing

/// `keep_results` and `forget_after` against the real daemon: only finished
/// jobs lose their directory, then their record; logged, in history and metrics.
@Suite(.serialized) struct RetentionEndToEndTests {
    @Test func oldFinishedJobsLoseTheirResultsThenTheirRecordAndNothingElseIsTouched() throws {
        let inst = try Installation(daemonLines: "keep_results = 2s\nforget_after = 5s\nmetrics_file = {ROOT}/metrics/jobfetchd.prom")
        try FileIO.makeDirectories(inst.root + "/metrics")
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1000-busy", "done-1-old", "err-old"]).status == 0)
        #expect(try inst.waitForResult("done-1-old") && inst.waitForResult("err-old"))
        let kindDir = inst.output + "/dataset"
        // Both directories go (renamed out of the kind directory, then removed), succeeded or failed alike.
        #expect(try Inotify.wait(until: { !FileIO.exists(kindDir + "/done-1-old") && !FileIO.exists(kindDir + "/err-old") },
                                 in: kindDir, mask: UInt32(IN_MOVED_FROM | IN_DELETE), timeout: 30), "log:\n\(inst.daemonLog)")
        let status = try inst.ctl(["status", "dataset", "done-1-old"])
        #expect(status.out.contains("state:       succeeded") && status.out.contains("by keep_results"), "\(status)")
        #expect(try inst.ctl(["history", "dataset", "done-1-old"]).out.contains("results removed: finished more than 2s ago (keep_results)"))
        #expect(inst.daemonLog.contains("(keep_results)"))
        // Then the records, with their history; the job still polling keeps its record.
        let state = inst.root + "/state"
        #expect(try Inotify.wait(until: { (try? inst.ctl(["status", "dataset", "done-1-old"]).status) != 0 },
                                 in: state, mask: UInt32(IN_MODIFY), timeout: 30), "log:\n\(inst.daemonLog)")
        #expect(try inst.ctl(["history", "dataset", "err-old"]).status != 0)
        let busy = try inst.ctl(["status", "dataset", "done-1000-busy"])
        #expect(busy.status == 0 && busy.out.contains("state:       polling"), "\(busy)")
        #expect(inst.daemonLog.contains("(forget_after)"))
        let metrics = inst.root + "/metrics/jobfetchd.prom"
        var text = ""
        #expect(try Inotify.wait(until: {
            text = (try? String(decoding: FileIO.readAll(metrics), as: UTF8.self)) ?? ""
            return text.contains("jobfetchd_jobs_forgotten_total 2")
        }, in: inst.root + "/metrics", mask: UInt32(IN_MOVED_TO), timeout: 30))
        #expect(text.contains("jobfetchd_results_removed_total 2"), "\(text)")
    }
}
