import Foundation
import Glibc
import JobFetchCore
import Testing

/// What scripts do with jobfetchctl: `add KIND -` from standard input,
/// `wait` for each outcome (and before the daemon runs), `history`.
@Suite(.serialized) struct CtlEndToEndTests {
    /// jobfetchctl wait, started now; `finish` it for its exit status and output.
    func startWait(_ inst: Installation, _ args: [String]) throws -> Installation.RunningCtl { try inst.startCtl(["wait"] + args) }

    /// The wait is asleep in poll(2), on its watches: it did not return at
    /// once. (No event says a process went to sleep: /proc is read every 5 ms.)
    func isBlocked(_ w: Installation.RunningCtl) -> Bool {
        for _ in 0..<2000 {
            guard w.process.isRunning else { return false }
            if let wchan = try? String(contentsOfFile: "/proc/\(w.process.processIdentifier)/wchan", encoding: .utf8), wchan.contains("poll") { return true }
            usleep(5000)
        }
        return false
    }

    @Test func waitExitsWithEachOutcome() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-2-w", "err-w", "done-1000-wc", "done-1000-wt"]).status == 0)
        let ok = try inst.ctl(["wait", "dataset", "done-2-w"])
        #expect(ok.status == 0 && ok.out == "\(inst.output)/dataset/done-2-w\n", "\(ok)")
        #expect(FileIO.exists(inst.output + "/dataset/done-2-w/job.json"), "it returns once the result is published")
        let failed = try inst.ctl(["wait", "dataset", "err-w"])
        #expect(failed.status == 3 && failed.out.hasPrefix("failed: "), "\(failed)")
        // A wait started before the cancel returns 4 when the cancel is carried out.
        #expect(inst.api.waitForLine { $0 == "STATUS done-1000-wc processing" } != nil)
        let cancelWait = try startWait(inst, ["dataset", "done-1000-wc"])
        #expect(isBlocked(cancelWait))
        #expect(try inst.ctl(["cancel", "dataset", "done-1000-wc"]).status == 0)
        let cancelled = cancelWait.finish()
        #expect(cancelled.status == 4 && cancelled.out.hasPrefix("cancelled: cancelled by the operator"), "\(cancelled)")
        let timedOut = try inst.ctl(["wait", "dataset", "done-1000-wt", "--timeout", "300ms"])
        #expect(timedOut.status == 5 && timedOut.out.contains("timed out"), "\(timedOut)")
        let unknown = try inst.ctl(["wait", "dataset", "never-added"])
        #expect(unknown.status == 6 && unknown.out.contains("no job dataset/never-added is registered"), "\(unknown)")
        #expect(try inst.ctl(["wait", "dataset", "../x"]).status != 0, "a bad ID is refused")
        #expect(try inst.ctl(["wait", "dataset", "done-2-w", "--timeout", "soon"]).status != 0)
    }

    /// `add` then `wait`, the daemon started only after both: the job in the
    /// spool counts as registered, and the wait returns when it is published.
    @Test func addThenWaitWorksBeforeTheDaemonStarts() throws {
        let inst = try Installation()
        #expect(try inst.ctl(["add", "dataset", "done-1-early"]).status == 0)
        let w = try startWait(inst, ["dataset", "done-1-early", "--timeout", "60s"])
        #expect(isBlocked(w), "the job in the spool is registered: it waits")
        try inst.startDaemon()
        let r = w.finish()
        #expect(r.status == 0 && r.out == "\(inst.output)/dataset/done-1-early\n", "\(r) log:\n\(inst.daemonLog)")
    }

    /// A retry requested while no daemon runs: the failed job will run
    /// again, so wait waits for its new outcome rather than the old one.
    @Test func waitAfterARetryWaitsForTheNewOutcome() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "fixlater-wr"]).status == 0)
        #expect(try inst.ctl(["wait", "dataset", "fixlater-wr"]).status == 3)
        inst.killDaemon()
        #expect(try inst.ctl(["retry", "dataset", "fixlater-wr"]).out.contains("queued"))
        let w = try startWait(inst, ["dataset", "fixlater-wr", "--timeout", "60s"])
        #expect(isBlocked(w), "not the old failure")
        try inst.startDaemon()
        let r = w.finish()
        #expect(r.status == 0 && r.out == "\(inst.output)/dataset/fixlater-wr\n", "\(r) log:\n\(inst.daemonLog)")
    }

    @Test func addReadsIDsFromStandardInputIntoOneSpoolFile() throws {
        let inst = try Installation()
        let ids = (0..<500).map { "done-1000-in\($0)" }
        let text = "# a comment\n\n" + ids.joined(separator: "\n") + "\n" + ids[0] + "\n"
        let added = try inst.ctl(["add", "dataset", "-"], input: Array(text.utf8))
        #expect(added.status == 0 && added.out.hasPrefix("queued 500 job(s) of kind dataset in "), "\(added)")
        #expect(try FileIO.list(inst.root + "/spool/dataset").filter { !$0.hasPrefix(".") }.count == 1)
        // A bad line names its line, and then nothing is registered.
        let bad = try inst.ctl(["add", "dataset", "-"], input: Array("ok-1\nok-2\n../etc\n".utf8))
        #expect(bad.status != 0 && bad.err.contains("standard input line 3:") && bad.err.contains("nothing was registered"), "\(bad)")
        #expect(try inst.ctl(["add", "dataset", "-"], input: []).status != 0, "no IDs")
        #expect(try FileIO.list(inst.root + "/spool/dataset").filter { !$0.hasPrefix(".") }.count == 1)
        try inst.startDaemon()
        #expect(try Inotify.wait(until: { (try? FileIO.list(inst.root + "/spool/dataset").filter { !$0.hasPrefix(".") }.isEmpty) == true },
                                 in: inst.root + "/spool/dataset", mask: UInt32(IN_DELETE | IN_MOVED_FROM), timeout: 30))
        let list = try inst.ctl(["list", "--json"])
        guard case .array(let jobs) = try JSONParser.parse(Array(list.out.utf8)) else { Issue.record("list: \(list)"); return }
        #expect(jobs.count == 500)
    }

    @Test func historyListsTheJobsEventsWithTimes() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "flaky-h"]).status == 0)
        #expect(try inst.ctl(["wait", "dataset", "flaky-h"]).status == 0)
        let h = try inst.ctl(["history", "dataset", "flaky-h"])
        #expect(h.status == 0, "\(h)")
        let lines = h.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasSuffix("  registered") == true, "\(lines)")
        #expect(lines.contains { $0.contains("503") }, "the retried answer is there: \(lines)")
        #expect(lines.contains { $0.hasSuffix("  succeeded") } && lines.last?.contains("  published to \(inst.output)/dataset/flaky-h") == true, "\(lines)")
        #expect(lines.allSatisfy { $0.count > 20 && $0.dropFirst(4).hasPrefix("-") }, "each line starts with its time")
        let json = try JSONParser.parse(Array(try inst.ctl(["history", "dataset", "flaky-h", "--json"]).out.utf8))
        guard case .array(let events) = json else { Issue.record("not an array"); return }
        #expect(events.count == lines.count && events.first?["event"] == "registered" && events.first?["at"]?.scalarText != nil)
        #expect(try inst.ctl(["history", "dataset", "never-added"]).status != 0)
    }
}
