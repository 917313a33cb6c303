import Foundation
import Glibc
import JobFetchCore
import Testing

/// `on_complete` and `notify_url` against the real daemon: real processes,
/// real `kill -9`, a real HTTP receiver checking signatures.
@Suite(.serialized) struct HookEndToEndTests {
    /// Writes an executable shell script into the installation's root.
    func script(_ inst: Installation, _ name: String, _ body: String) throws -> String {
        let path = inst.root + "/" + name
        try FileIO.writeAtomically(path, Array(("#!/bin/sh\n" + body).utf8))
        chmod(path, 0o755)
        return path
    }

    func lines(_ path: String) -> [String] {
        ((try? String(decoding: FileIO.readAll(path), as: UTF8.self)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Waits (inotify on the state directory, where every commit writes) until `status` says `text`.
    func waitForStatus(_ inst: Installation, _ id: String, contains text: String, timeout: Double = 60) throws -> Bool {
        try Inotify.wait(until: { ((try? inst.ctl(["status", "dataset", id]).out) ?? "").contains(text) },
                         in: inst.root + "/state", mask: UInt32(IN_MODIFY), timeout: timeout)
    }

    /// A process that is gone: no such pid, or a zombie no one reaped yet.
    func gone(_ pid: Int32) -> Bool {
        guard let stat = try? FileIO.readAll("/proc/\(pid)/stat") else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return true }
        return text[text.index(close, offsetBy: 2)] == "Z"
    }

    /// A daemon whose hook logs "start PID ATTEMPT" to the returned file, blocks
    /// the first time (as if the daemon died or stopped under it), and logs
    /// "done" every other time; `job` is registered and its first run has started.
    func startHookThatBlocksOnce(job: String, daemonLines: String = "") throws -> (Installation, String) {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh" + (daemonLines.isEmpty ? "" : "\n" + daemonLines))
        let runs = inst.root + "/runs"
        _ = try script(inst, "hook.sh", """
            echo "start $$ $JOBFETCH_ATTEMPT" >> \(runs)
            if [ ! -e \(inst.root)/ran-once ]; then : > \(inst.root)/ran-once; exec sleep 300; fi
            echo "done" >> \(runs)
            """)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", job]).status == 0)
        #expect(try Inotify.wait(until: { lines(runs).count == 1 }, in: inst.root, mask: UInt32(IN_MODIFY | IN_CREATE), timeout: 60),
                "log:\n\(inst.daemonLog)")
        return (inst, runs)
    }

    @Test func aHookRunsExactlyOnceWithTheJobsEnvironmentAndItsOutputLogged() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh \"two words\"\nmax_hooks = 1")
        let runs = inst.root + "/runs"
        _ = try script(inst, "hook.sh", """
            read line; stdin=$?
            echo "$JOBFETCH_KIND|$JOBFETCH_ID|$JOBFETCH_OUTCOME|$JOBFETCH_DIR|$JOBFETCH_REASON|$JOBFETCH_ATTEMPT|$1|stdin=$stdin|secret=${DAEMON_ONLY_SECRET:-none}" >> \(runs)
            echo "loaded $(wc -l < "$JOBFETCH_DIR/job.json") lines of $JOBFETCH_ID"
            echo "a line on stderr" >&2
            # Nothing of the daemon's but stdin, the output pipe and what the shell opens itself.
            for f in /proc/$$/fd/*; do readlink "$f"; done > \(inst.root)/fds-$JOBFETCH_ID
            stat -c %i "$JOBFETCH_DIR/job.json" > \(inst.root)/job-$JOBFETCH_ID
            sha256sum < "$JOBFETCH_DIR/job.json" >> \(inst.root)/job-$JOBFETCH_ID
            """)
        try inst.startDaemon(environment: ["DAEMON_ONLY_SECRET": "s3cr3t"])
        #expect(try inst.ctl(["add", "dataset", "done-1-hook", "err-hook"]).status == 0)
        #expect(try waitForStatus(inst, "done-1-hook", contains: "on_complete: succeeded after 1 attempt"), "log:\n\(inst.daemonLog)")
        #expect(try waitForStatus(inst, "err-hook", contains: "on_complete: succeeded after 1 attempt"), "log:\n\(inst.daemonLog)")
        let seen = lines(runs).sorted()
        #expect(seen.count == 2, "\(seen)")
        #expect(seen.first == "dataset|done-1-hook|succeeded|\(inst.output)/dataset/done-1-hook||1|two words|stdin=1|secret=none", "\(seen)")
        #expect(seen.last?.hasPrefix("dataset|err-hook|failed|\(inst.output)/dataset/err-hook|") == true, "\(seen)")
        #expect(seen.last?.hasSuffix("|1|two words|stdin=1|secret=none") == true, "\(seen)")
        // Its output, line by line, with the job.
        let log = inst.daemonLog
        #expect(log.contains("dataset/done-1-hook: on_complete: loaded"), "\(log)")
        #expect(log.contains("dataset/done-1-hook: on_complete: a line on stderr"))
        let history = try inst.ctl(["history", "dataset", "done-1-hook"]).out
        #expect(history.contains("on_complete started (attempt 1 of 4)") && history.contains("on_complete succeeded: exit 0"), "\(history)")
        let json = try JSONParser.parse(Array(try inst.ctl(["status", "dataset", "done-1-hook", "--json"]).out.utf8))
        #expect(json["hook"]?["state"]?.scalarText == "succeeded" && json["hook"]?["attempts"]?.scalarText == "1", "\(json)")
        #expect(json["hook"]?["last"]?.scalarText?.hasPrefix("exit 0") == true)
        // job.json is never rewritten for the hook: the file it saw is the file there now.
        let seenJob = lines(inst.root + "/job-done-1-hook")
        let path = inst.output + "/dataset/done-1-hook/job.json"
        var st = stat()
        #expect(stat(path, &st) == 0 && seenJob.first == String(st.st_ino), "\(seenJob)")
        #expect(seenJob.last?.hasPrefix(sha256sum(path)) == true, "\(seenJob)")
        let fds = lines(inst.root + "/fds-done-1-hook")
        #expect(fds.first == "/dev/null", "stdin: \(fds)")
        #expect(!fds.contains { $0.contains("sqlite") || $0.hasPrefix("socket:") || $0.contains("inotify") || $0.contains("eventfd") || $0.contains("pidfd") },
                "a descriptor of the daemon leaked into the hook: \(fds)")

        // Restarted, the daemon runs no finished hook again: with max_hooks = 1
        // a rerun would come before the new job's hook, which is due later.
        inst.daemon?.signal(SIGTERM)
        _ = inst.daemon?.waitExit(timeout: 30)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-later"]).status == 0)
        #expect(try waitForStatus(inst, "done-1-later", contains: "on_complete: succeeded"), "log:\n\(inst.daemonLog)")
        #expect(lines(runs).count == 3, "\(lines(runs))")
    }

    @Test func aHookRunningWhenTheDaemonIsKilledRunsAgainAfterTheRestart() throws {
        let (inst, runs) = try startHookThatBlocksOnce(job: "done-1-kill")
        let first = lines(runs).first?.split(separator: " ") ?? []
        inst.killDaemon()
        // The orphaned first run is the test's to stop.
        if first.count > 1, let pid = Int32(first[1]) { kill(pid, SIGKILL) }
        try inst.startDaemon()
        #expect(try waitForStatus(inst, "done-1-kill", contains: "on_complete: succeeded after 2 attempts"), "log:\n\(inst.daemonLog)")
        #expect(lines(runs).count == 3 && lines(runs).last == "done", "\(lines(runs))")
        #expect(lines(runs).dropFirst().first?.hasSuffix(" 2") == true, "the second run is attempt 2: \(lines(runs))")
        let history = try inst.ctl(["history", "dataset", "done-1-kill"]).out
        #expect(history.contains("on_complete was running when the daemon stopped (attempt 1); it runs again"), "\(history)")
    }

    @Test func aHookStoppedByACleanShutdownRunsAgainWithoutSpendingAnAttempt() throws {
        // No retries: a stop of the daemon must not use up the hook's only attempt.
        let (inst, runs) = try startHookThatBlocksOnce(job: "done-1-stop", daemonLines: "hook_retries = 0")
        inst.daemon?.signal(SIGTERM)
        #expect(inst.daemon?.waitExit(timeout: 30) == 0)
        #expect(try inst.ctl(["status", "dataset", "done-1-stop"]).out.contains("on_complete: pending"))
        try inst.startDaemon()
        #expect(try waitForStatus(inst, "done-1-stop", contains: "on_complete: succeeded after 1 attempt"), "log:\n\(inst.daemonLog)")
        let starts = lines(runs).filter { $0.hasPrefix("start ") }
        #expect(starts.count == 2 && starts.allSatisfy { $0.hasSuffix(" 1") } && lines(runs).last == "done", "both runs are attempt 1: \(lines(runs))")
        #expect(try inst.ctl(["history", "dataset", "done-1-stop"]).out.contains("on_complete stopped by the daemon's shutdown (attempt 1); it runs again at the next start"))
    }

    @Test func aHookPastHookTimeoutIsKilledWithItsChildren() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh\nhook_timeout = 1s\nhook_retries = 0")
        let pids = inst.root + "/pids"
        _ = try script(inst, "hook.sh", """
            sleep 300 &
            echo "$! $$" > \(pids).tmp && mv \(pids).tmp \(pids)
            sleep 300
            """)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-slow"]).status == 0)
        #expect(try Inotify.wait(for: "pids", in: inst.root, timeout: 60), "log:\n\(inst.daemonLog)")
        let both = lines(pids).first?.split(separator: " ").compactMap { Int32($0) } ?? []
        #expect(both.count == 2)
        #expect(try waitForStatus(inst, "done-1-slow", contains: "on_complete: failed after 1 attempt; last: killed after hook_timeout (1s)"),
                "log:\n\(inst.daemonLog)")
        // Killed before the daemon recorded it: the hook and the child it left.
        for pid in both { #expect(gone(pid), "process \(pid) still runs") }
        #expect(inst.daemonLog.contains("on_complete ran past hook_timeout (1s): killed with its process group"))
    }

    @Test func aHookFailingEveryTimeIsRetriedThenShownFailed() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh\nhook_retries = 2\nmetrics_file = {ROOT}/jobfetchd.prom")
        let runs = inst.root + "/runs"
        _ = try script(inst, "hook.sh", "echo \"attempt $JOBFETCH_ATTEMPT\" >> \(runs)\necho 'database is down' >&2\nexit 3\n")
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-fails"]).status == 0)
        #expect(try waitForStatus(inst, "done-1-fails", contains: "on_complete: failed after 3 attempts; last: exit 3"), "log:\n\(inst.daemonLog)")
        #expect(lines(runs) == ["attempt 1", "attempt 2", "attempt 3"])
        let history = try inst.ctl(["history", "dataset", "done-1-fails"]).out
        #expect(history.contains("on_complete failed: exit 3") && history.contains("(attempt 1 of 3); again at"), "\(history)")
        #expect(history.contains("gave up after 3 attempt(s)"), "\(history)")
        #expect(inst.daemonLog.contains("on_complete: database is down"))
        // The job itself stays succeeded: the hook is not the job.
        #expect(try inst.ctl(["status", "dataset", "done-1-fails"]).out.contains("state:       succeeded"))
    }

    @Test func fiftyJobsWithMaxHooksTwoNeverRunThreeAtOnceAndNeverStallADownload() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh\nmax_hooks = 2")
        let spans = inst.root + "/spans"
        _ = try script(inst, "hook.sh", """
            start=$(date +%s.%N)
            sleep 0.4
            echo "$JOBFETCH_ID $start $(date +%s.%N)" >> \(spans)
            """)
        try inst.startDaemon()
        let ids = (1...50).map { "done-1-many\($0)" }
        #expect(try inst.ctl(["add", "dataset"] + ids).status == 0)
        // Once the hooks run, a slow download starts beside them.
        #expect(try Inotify.wait(for: "spans", in: inst.root, timeout: 60), "log:\n\(inst.daemonLog)")
        #expect(try inst.ctl(["add", "dataset", "slow-beside"]).status == 0)
        #expect(try inst.waitForResult("slow-beside", timeout: 60))
        let publishedAt = Date().timeIntervalSince1970
        #expect(try Inotify.wait(until: { lines(spans).count == 51 }, in: inst.root, mask: UInt32(IN_MODIFY), timeout: 120),
                "log:\n\(inst.daemonLog)")
        let intervals = lines(spans).compactMap { line -> (Double, Double)? in
            let f = line.split(separator: " ")
            guard f.count == 3, let a = Double(f[1]), let b = Double(f[2]) else { return nil }
            return (a, b)
        }
        #expect(intervals.count == 51)
        // The most hooks alive at any one time, from their start and end times.
        var points: [(Double, Int)] = intervals.flatMap { [($0.0, 1), ($0.1, -1)] }
        points.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        var alive = 0, most = 0
        for p in points { alive += p.1; most = max(most, alive) }
        #expect(most == 2, "at most two at once, and two at some point: \(most)")
        #expect((intervals.map(\.1).max() ?? 0) > publishedAt, "hooks were still running when the download was published")
        #expect(Set(lines(spans).compactMap { $0.split(separator: " ").first }).count == 51, "one run per job")
    }

    @Test func webhooksAreSignedRetriedAfterA500AndNeverCarryTheAPICredentials() throws {
        let inst = try Installation(daemonLines: "notify_url = http://127.0.0.1:{RECEIVER}/jobs\nnotify_secret = ${file:{ROOT}/notify-secret}\nhook_retries = 1")
        try FileIO.writeAtomically(inst.root + "/notify-secret", Array("webhook-secret-\(UInt32.random(in: 0...UInt32.max))\n".utf8))
        let receiver = try Child(["/usr/bin/env", "python3", URL(fileURLWithPath: Installation.fakeAPI).deletingLastPathComponent().path + "/webhook_receiver.py",
                                  "--secret-file", inst.root + "/notify-secret", "--fail-first", "retry", "--redirect", "moved"], stderrPath: inst.root + "/receiver.err")
        defer { receiver.signal(SIGKILL); _ = receiver.waitExit(timeout: 10) }
        guard let line = receiver.waitForLine(timeout: 30, { $0.hasPrefix("PORT ") }) else {
            Issue.record("the receiver did not start")
            return
        }
        let conf = String(decoding: try FileIO.readAll(inst.configPath), as: UTF8.self)
            .replacingOccurrences(of: "{RECEIVER}", with: String(line.dropFirst(5)))
        try FileIO.writeAtomically(inst.configPath, Array(conf.utf8))
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-ok", "err-notify", "done-1-retry", "done-1-moved"]).status == 0)
        for id in ["done-1-ok", "err-notify", "done-1-retry"] {
            #expect(try waitForStatus(inst, id, contains: "webhook:     succeeded"), "\(id); log:\n\(inst.daemonLog)")
        }
        // A redirect is not followed: it fails, is retried once (hook_retries = 1), then shown failed.
        #expect(try waitForStatus(inst, "done-1-moved", contains: "webhook:     failed after 2 attempts; last: HTTP 302 from http://127.0.0.1:"),
                "log:\n\(inst.daemonLog)")
        #expect(try inst.ctl(["status", "dataset", "done-1-moved"]).out.contains("(redirects are not followed)"))
        let deliveries = receiver.allLines.filter { $0.hasPrefix("DELIVERY ") }
        #expect(deliveries.filter { $0.contains("/elsewhere") || $0.contains("done-1-moved ") }.count == 2, "\(deliveries)")
        #expect(deliveries.count == 6, "\(deliveries)")
        #expect(deliveries.allSatisfy { $0.contains(" valid ") }, "every signature checks: \(deliveries)")
        #expect(deliveries.allSatisfy { !$0.contains("x-api-key") }, "the API's credentials never go to the receiver: \(deliveries)")
        let retried = deliveries.filter { $0.contains("dataset/done-1-retry ") }
        #expect(retried.count == 2 && retried[0].contains(" 500 ") && retried[1].contains(" 204 "), "\(retried)")
        for id in ["done-1-ok", "err-notify"] {
            let mine = deliveries.filter { $0.contains("dataset/\(id) ") }
            #expect(mine.count == 1, "\(id): \(mine)")
            // The body is job.json, byte for byte.
            #expect(mine.first?.contains("sha256=\(sha256sum(inst.output + "/dataset/" + id + "/job.json"))") == true, "\(mine)")
        }
        let history = try inst.ctl(["history", "dataset", "done-1-retry"]).out
        #expect(history.contains("webhook failed: HTTP 500 from http://127.0.0.1:") && history.contains("webhook succeeded: HTTP 204"), "\(history)")
        #expect(!inst.daemonLog.contains("webhook-secret-"), "the secret is never logged")
    }

    @Test func aHookBlockedOrFloodingItsOutputHoldsNoOtherJobUp() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh\nmax_hooks = 1")
        let fifo = inst.root + "/release"
        #expect(mkfifo(fifo, 0o600) == 0)
        // The first hook floods its output (one endless line, then many), then blocks until the test releases it.
        _ = try script(inst, "hook.sh", """
            echo "$JOBFETCH_ID" >> \(inst.root)/started
            if [ "$JOBFETCH_ID" = done-1-first ]; then
                head -c 3000000 /dev/zero | tr '\\0' x; echo; yes "a chatty line" | head -n 100000
                read x < \(fifo)
            fi
            """)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "done-1-first"]).status == 0)
        #expect(try Inotify.wait(for: "started", in: inst.root, timeout: 60), "log:\n\(inst.daemonLog)")
        // With the only hook slot taken and that hook blocked, another job is polled, downloaded and published.
        #expect(try inst.ctl(["add", "dataset", "done-2-second"]).status == 0)
        #expect(try inst.waitForResult("done-2-second", timeout: 60), "log:\n\(inst.daemonLog)")
        #expect(try waitForStatus(inst, "done-2-second", contains: "on_complete: pending"), "log:\n\(inst.daemonLog)")
        #expect(try inst.ctl(["status", "dataset", "done-1-first"]).out.contains("on_complete: running (attempt 1)"))
        // Released, both hooks end.
        let w = open(fifo, O_WRONLY)
        #expect(w >= 0)
        _ = write(w, "go\n", 3)
        close(w)
        #expect(try waitForStatus(inst, "done-1-first", contains: "on_complete: succeeded"), "log:\n\(inst.daemonLog)")
        #expect(try waitForStatus(inst, "done-2-second", contains: "on_complete: succeeded"), "log:\n\(inst.daemonLog)")
        // The flood was logged up to the cap, in pieces of at most 1 KiB, and said so.
        let log = inst.daemonLog
        #expect(log.contains("on_complete: more than 1000 lines of output; the rest of this run's is not logged"))
        #expect(log.components(separatedBy: "dataset/done-1-first: on_complete: ").count - 1 <= 1001)
    }

    @Test func aRetryWhileTheHookRunsLetsThatRunEndUnrecordedThenRunsTheNewOutcomesHook() throws {
        let inst = try Installation(daemonLines: "on_complete = {ROOT}/hook.sh")
        let fifo = inst.root + "/release"
        #expect(mkfifo(fifo, 0o600) == 0)
        let runs = inst.root + "/runs"
        // The first outcome's hook blocks until released; later ones end at once.
        _ = try script(inst, "hook.sh", """
            echo "start $JOBFETCH_OUTCOME" >> \(runs)
            if [ ! -e \(inst.root)/first ]; then : > \(inst.root)/first; read x < \(fifo); fi
            echo "end $JOBFETCH_OUTCOME" >> \(runs)
            """)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "err-twice"]).status == 0)
        #expect(try Inotify.wait(until: { lines(runs).count == 1 }, in: inst.root, mask: UInt32(IN_MODIFY | IN_CREATE), timeout: 60))
        // Retried while its hook runs: the job fails again, and its new hook waits for the old run.
        #expect(try inst.ctl(["retry", "dataset", "err-twice"]).status == 0)
        #expect(try waitForStatus(inst, "err-twice", contains: "retried:     1 time(s)"), "log:\n\(inst.daemonLog)")
        #expect(try waitForStatus(inst, "err-twice", contains: "on_complete: pending"), "log:\n\(inst.daemonLog)")
        #expect(lines(runs) == ["start failed"], "no second run beside the first: \(lines(runs))")
        let w = open(fifo, O_WRONLY)
        _ = write(w, "go\n", 3)
        close(w)
        #expect(try waitForStatus(inst, "err-twice", contains: "on_complete: succeeded after 1 attempt"), "log:\n\(inst.daemonLog)")
        #expect(lines(runs) == ["start failed", "end failed", "start failed", "end failed"], "\(lines(runs))")
        #expect(inst.daemonLog.contains("on_complete ended (exit 0"), "\(inst.daemonLog)")
        #expect(inst.daemonLog.contains("but the job was retried or forgotten meanwhile; not recorded"))
    }
}
