import Foundation
import Glibc
import JobFetchCore
import Testing

/// SIGHUP against the real daemon: new and changed kinds take effect, a
/// broken config is refused with its errors logged and the old one kept.
@Suite(.serialized) struct ReloadEndToEndTests {
    @Test func sighupAddsKindsAndRefusesABrokenConfig() throws {
        let inst = try Installation()
        try inst.startDaemon()
        let original = String(decoding: try FileIO.readAll(inst.configPath), as: UTF8.self)
        #expect(try inst.ctl(["add", "bulk", "inline-x"]).status != 0, "no such kind yet")

        // A new kind: its spool directory is watched and its jobs run, without a restart.
        let added = original + """

            [kind bulk]
            preset = bulk-job
            status_url = http://127.0.0.1:\(inst.port)/bulkjob/{id}/status
            header = x-api-key: ${file:\(inst.root)/api-key}
            poll_interval = 200ms
            """
        try FileIO.writeAtomically(inst.configPath, Array(added.utf8))
        inst.daemon?.signal(SIGHUP)
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("configuration reloaded: 2 kind(s)") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 30))
        #expect(try inst.ctl(["add", "bulk", "inline-x"]).status == 0)
        #expect(try inst.waitForResult("inline-x", kind: "bulk"))
        #expect(try inst.jobJSON("inline-x", kind: "bulk")["outcome"] == "succeeded")

        // A broken config: every problem logged, the running configuration kept.
        try FileIO.writeAtomically(inst.configPath, Array((added + "\npol_interval = 1s\n").utf8))
        inst.daemon?.signal(SIGHUP)
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("reload refused, keeping the running configuration") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 30))
        #expect(inst.daemonLog.contains("pol_interval: unknown key in [kind bulk]; did you mean \"poll_interval\"?"))
        #expect(try inst.ctl(["add", "dataset", "done-1-after"]).status != 0, "ctl reads the file: it sees the broken config")
        try FileIO.writeAtomically(inst.configPath, Array(added.utf8))
        #expect(try inst.ctl(["add", "dataset", "done-1-after", "done-1-after2"]).status == 0)
        #expect(try inst.waitForResult("done-1-after"), "the daemon kept running on the old configuration")
        #expect(inst.daemon.map { kill($0.pid, 0) == 0 } == true)
    }

    /// A daemon started with SIGHUP blocked and already pending (a careless
    /// parent, a reload sent while it starts) neither dies of it nor stays
    /// deaf: it unblocks its signals, ignores SIGHUP until the service group
    /// listens, and then a SIGHUP reloads and SIGINT stops it cleanly.
    @Test func aSighupDuringStartupNeitherKillsNorDeafensTheDaemon() throws {
        let inst = try Installation()
        try inst.startDaemon(beforeReady: { $0.signal(SIGHUP) }, blocked: [SIGHUP])
        #expect(try inst.ctl(["add", "dataset", "done-1-hup"]).status == 0)
        #expect(try inst.waitForResult("done-1-hup"))
        #expect(inst.daemon.map { kill($0.pid, 0) == 0 } == true)
        inst.daemon?.signal(SIGHUP)
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("configuration reloaded: 1 kind(s)") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 30))
        inst.daemon?.signal(SIGINT)
        #expect(inst.daemon?.waitExit() == 0)
        #expect(inst.daemonLog.contains("stopped"))
    }
}
