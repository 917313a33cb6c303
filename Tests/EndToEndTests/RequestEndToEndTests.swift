import Foundation
import Glibc
import JobFetchCore
import Testing

/// `jobfetchctl cancel` and `retry` through the spool, against the real daemon.
@Suite(.serialized) struct RequestEndToEndTests {
    @Test func cancelStopsPollingAndPublishesCancelled() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1000-cancel"]).status == 0)
        #expect(inst.api.waitForLine { $0 == "STATUS done-1000-cancel processing" } != nil)
        let cancel = try inst.ctl(["cancel", "dataset", "done-1000-cancel"])
        #expect(cancel.status == 0, "\(cancel.err)")
        #expect(cancel.out.hasPrefix("dataset/done-1000-cancel: cancelled (cancelled by the operator while polling"), "\(cancel.out)")
        #expect(try inst.waitForResult("done-1000-cancel"))
        let job = try inst.jobJSON("done-1000-cancel")
        #expect(job["outcome"] == "cancelled")
        #expect(job["reason"]?.scalarText?.hasPrefix("cancelled by the operator while polling") == true)
        // Polling stopped: no status request after the cancel was carried out.
        let polls = inst.api.allLines.filter { $0 == "STATUS done-1000-cancel processing" }.count
        #expect(try inst.ctl(["status", "dataset", "done-1000-cancel"]).out.contains("state:       cancelled"))
        #expect(inst.api.allLines.filter { $0 == "STATUS done-1000-cancel processing" }.count == polls)
    }

    @Test func cancelStopsADownloadInFlight() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "slow-cancel"]).status == 0)
        #expect(inst.api.waitForLine { $0.hasPrefix("CSV-START slow-cancel ") } != nil)
        let cancel = try inst.ctl(["cancel", "dataset", "slow-cancel"])
        #expect(cancel.out.contains("cancelled by the operator while fetching (download of http://127.0.0.1:\(inst.port)/v0/datasets/slow-cancel/csv stopped)"), "\(cancel.out)")
        // The server saw the connection go away before the body was sent.
        #expect(inst.api.waitForLine(timeout: 10) { $0 == "CSV-ABORT slow-cancel" } != nil)
        #expect(!inst.api.allLines.contains("CSV-END slow-cancel"))
        #expect(try inst.waitForResult("slow-cancel"))
        #expect(try inst.jobJSON("slow-cancel")["outcome"] == "cancelled")
        #expect(try FileIO.list("\(inst.output)/dataset/slow-cancel") == ["job.json"])
        #expect(!FileIO.exists("\(inst.output)/.incoming/dataset/slow-cancel"))
    }

    @Test func retryReplacesAFailedResultAtomically() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "fixlater-r"]).status == 0)
        #expect(try inst.waitForResult("fixlater-r"))
        #expect(try inst.jobJSON("fixlater-r")["outcome"] == "failed")
        let dir = "\(inst.output)/dataset/fixlater-r"

        let retry = try inst.ctl(["retry", "dataset", "fixlater-r"])
        #expect(retry.status == 0, "\(retry.err)")
        #expect(retry.out.contains("retry 1 requested (was failed)"), "\(retry.out)")
        // Until the new result is in place the old one stays, then one swap replaces it.
        #expect(try inst.waitUntil { (try? inst.jobJSON("fixlater-r"))?["outcome"] == "succeeded" }, "log:\n\(inst.daemonLog)")
        let job = try inst.jobJSON("fixlater-r")
        #expect(job["retries"] == .int(1))
        #expect(job["reason"] == nil)
        #expect(try FileIO.list(dir).sorted() == ["fixlater-r.csv", "job.json"])
        // The swapped-out old result is removed before the store records the job as published.
        #expect(try Inotify.wait(until: { (try? inst.ctl(["status", "dataset", "fixlater-r"]).out.contains("state:       succeeded")) == true },
                                 in: inst.root + "/state", mask: UInt32(IN_MODIFY), timeout: 30))
        #expect(try FileIO.list("\(inst.output)/.incoming/dataset").isEmpty)
        #expect(try inst.ctl(["status", "dataset", "fixlater-r"]).out.contains("retried:     1 time(s) by an operator"))

        // A succeeded job is not retried; the answer says why.
        let again = try inst.ctl(["retry", "dataset", "fixlater-r"])
        #expect(again.out.contains("only failed or cancelled jobs are retried"), "\(again.out)")
        #expect(try inst.jobJSON("fixlater-r")["outcome"] == "succeeded")
    }

    @Test func requestsForUnknownJobsAreRefusedAndQueuedWhenTheDaemonIsDown() throws {
        let inst = try Installation()
        // Daemon not running: the request waits in the spool.
        #expect(try inst.ctl(["add", "dataset", "done-1000-later", "done-1000-early"]).status == 0)
        let queued = try inst.ctl(["cancel", "dataset", "done-1000-later"])
        #expect(queued.status == 0)
        #expect(queued.out.hasPrefix("queued: jobfetchd is not running"), "\(queued.out)")
        try inst.startDaemon()
        // The registration file is still settling (written moments before the start):
        // a cancel arriving now waits for it instead of finding no job.
        let early = try inst.ctl(["cancel", "dataset", "done-1000-early"])
        #expect(early.out.hasPrefix("dataset/done-1000-early: cancelled"), "\(early.out)")
        // At start the registration is taken before the cancel, so the cancel finds its job.
        for id in ["done-1000-later", "done-1000-early"] {
            #expect(try inst.waitForResult(id))
            #expect(try inst.jobJSON(id)["outcome"] == "cancelled")
        }

        let unknown = try inst.ctl(["cancel", "dataset", "never-added"])
        #expect(unknown.status == 1)
        #expect(unknown.out.contains("cancel dataset/never-added: not registered"), "\(unknown.out)")
        let badKind = try inst.ctl(["retry", "nosuchkind", "x"])
        #expect(badKind.status != 0)
        #expect(badKind.err.contains("unknown kind \"nosuchkind\""))
        // A second daemon on the same state refuses to start.
        let second = try Child([Installation.binDir + "/jobfetchd", "--config", inst.configPath], stderrPath: inst.root + "/second.log")
        #expect(second.waitExit() == 1)
        let log = (try? String(contentsOfFile: inst.root + "/second.log", encoding: .utf8)) ?? ""
        #expect(log.contains("another jobfetchd is running with state_dir \(inst.root)/state"), "\(log)")
    }

    @Test func listWatchRefreshesUntilInterrupted() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1000-watched"]).status == 0)
        let watch = try Child([Installation.binDir + "/jobfetchctl", "--config", inst.configPath, "list", "--watch", "--interval", "0.2"],
                              stderrPath: inst.root + "/watch.err")
        // Three refreshes, each with the job's row.
        var frames = 0
        let third = watch.waitForLine(timeout: 20) { line in
            if line.hasPrefix("jobfetchctl list --watch: 1 job(s)") { frames += 1 }
            return frames == 3
        }
        #expect(third != nil)
        #expect(watch.allLines.filter { $0.contains("done-1000-watched") && $0.contains("polling") }.count >= 2)
        watch.signal(SIGINT)
        #expect(watch.waitExit() == 128 + SIGINT)
    }
}
