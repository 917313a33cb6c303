import Foundation
import Glibc
import JobFetchCore
import Testing
import TestSupport

/// SPEC "Hostile input", through the real binaries: a hostile API, hostile
/// archives and a hostile spool writer, each finding of the probe on f3105d2
/// (issue 10) as it was found. Every test also checks that the daemon is
/// still there and every other job goes on.
@Suite(.serialized) struct HostileEndToEndTests {
    func printable(_ text: String) -> Bool {
        !text.utf8.contains { $0 == 0x1B || $0 == 0x07 || $0 == 0x0D || $0 == 0x00 } && !text.unicodeScalars.contains { (0x80...0x9F).contains($0.value) || $0 == "\u{202E}" }
    }

    func stillRunning(_ inst: Installation) -> Bool {
        guard let d = inst.daemon else { return false }
        return kill(d.pid, 0) == 0 && d.waitExit(timeout: 0) == nil
    }

    @Test func zipLinksThatChainOutOfTheJobDirectoryAreNeverCreatedNorFollowed() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "zipchain-1"]).status == 0)
        #expect(try inst.waitForResult("zipchain-1"), "log:\n\(inst.daemonLog)")
        let job = try inst.jobJSON("zipchain-1")
        #expect(job["outcome"] == "succeeded")
        guard case .array(let warnings)? = job["warnings"] else { Issue.record("no warnings"); return }
        #expect(warnings.filter { $0.scalarText?.contains("is a symbolic link") == true }.count == 3)
        guard case .array(let files)? = job["files"] else { Issue.record("no files"); return }
        #expect(files.compactMap { $0["name"]?.scalarText } == ["l/m/escaped-1.txt", "l/m/n/escaped-2.txt", "ok.csv"])
        // Nothing was written anywhere but the job's own directory, and no link exists in the output.
        let jobDir = inst.output + "/dataset/zipchain-1"
        var strays: [String] = []
        var links: [String] = []
        func walk(_ dir: String) {
            for name in (try? FileIO.list(dir)) ?? [] {
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFLNK { links.append(path) }
                if name.hasPrefix("escaped-") && !path.hasPrefix(jobDir + "/") { strays.append(path) }
                if (st.st_mode & S_IFMT) == S_IFDIR { walk(path) }
            }
        }
        walk(inst.root)
        #expect(strays.isEmpty, "\(strays)")
        #expect(links.isEmpty, "\(links)")
        #expect(FileManager.default.fileExists(atPath: jobDir + "/l/m/n/escaped-2.txt"))
        #expect(stillRunning(inst))
    }

    @Test func aSpoolEntrySwappedForALinkOrAFIFOIsRejectedWithoutReadingOrBlocking() throws {
        let inst = try Installation()
        try inst.startDaemon()
        let inbox = inst.spool + "/dataset"
        // A file the spool's writers may not read; in its place, a link to it.
        let secret = inst.root + "/secret.txt"
        try FileIO.writeAtomically(secret, Array("TOPSECRET-LINE-1\n".utf8), mode: 0o600)
        #expect(symlink(secret, inbox + "/.linked") == 0)
        #expect(rename(inbox + "/.linked", inbox + "/linked") == 0)
        // A FIFO renamed in: opening it for reading would block the engine forever.
        #expect(mkfifo(inbox + "/.fifo", 0o660) == 0)
        #expect(rename(inbox + "/.fifo", inbox + "/fifo") == 0)
        let rejected = inst.spool + "/.rejected"
        #expect(try Inotify.wait(for: "dataset.linked.reason", in: rejected, timeout: 20))
        #expect(try Inotify.wait(for: "dataset.fifo.reason", in: rejected, timeout: 20))
        let linkReason = String(decoding: try FileIO.readAll(rejected + "/dataset.linked.reason"), as: UTF8.self)
        #expect(linkReason.contains("a symbolic link"))
        #expect(!linkReason.contains("TOPSECRET"))
        #expect(!inst.daemonLog.contains("TOPSECRET"))
        let fifoReason = String(decoding: try FileIO.readAll(rejected + "/dataset.fifo.reason"), as: UTF8.self)
        #expect(fifoReason.contains("not a regular file"))
        // The race the probe won: a plain file renamed in, then a link renamed
        // over it, again and again for 3 s, so that some swaps land between the
        // daemon's look at the name and its open (a check by path, then an open by path).
        try FileIO.writeAtomically(secret, Array("TOP SECRET password=hunter2\n".utf8), mode: 0o600)
        let raced = DispatchSemaphore(value: 0)
        let racer = Thread {
            defer { raced.signal() }
            let end = SystemClock.monotonic() + 3
            var i = 0
            while SystemClock.monotonic() < end {
                i += 1
                let name = inbox + "/race-\(i % 8)"
                _ = try? FileIO.writeAtomically(inbox + "/.r", Array("innocent-\(i)\n".utf8))
                _ = symlink(secret, inbox + "/.s")
                _ = rename(inbox + "/.r", name)
                // A varying head start for the daemon (0 to 300 µs): the swap lands
                // sometimes before it looks, sometimes after it has opened, sometimes between.
                var pause = timespec(tv_sec: 0, tv_nsec: Int.random(in: 0...300_000))
                nanosleep(&pause, nil)
                _ = rename(inbox + "/.s", name)
            }
        }
        racer.start()
        // The engine was never stuck: a job added afterwards finishes, and SIGTERM stops the daemon cleanly.
        #expect(try inst.ctl(["add", "dataset", "done-0-after"]).status == 0)
        #expect(try inst.waitForResult("done-0-after"), "log:\n\(inst.daemonLog)")
        // Whatever the daemon opened during the race, the secret reached neither the log nor a .reason file.
        #expect(raced.wait(timeout: .now() + 30) == .success)
        for name in try FileIO.list(rejected) where name.hasSuffix(".reason") {
            let text = String(decoding: try FileIO.readAll(rejected + "/" + name), as: UTF8.self)
            #expect(!text.contains("hunter2"), "\(name): \(text)")
        }
        #expect(!inst.daemonLog.contains("hunter2"))
        #expect(try inst.ctl(["list"]).out.contains("innocent-"), "the plain files of the race were registered")
        inst.daemon?.signal(SIGTERM)
        #expect(inst.daemon?.waitExit(timeout: 30) == 0)
        inst.daemon = nil
    }

    /// The probe's race, made certain: an `LD_PRELOAD` shim renames a link (to
    /// a 0600 file) over the spool entry right after the daemon's `lstat` or
    /// `stat` of it returns, the widest window a racer could hope for. A
    /// daemon that checks by path and then opens by path reads the secret.
    static let swapShim = """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/stat.h>
        static void swap_after(const char *path) {
            const char *name = getenv("JF_SWAP_NAME"), *link = getenv("JF_SWAP_LINK");
            if (!name || !link || !path) return;
            size_t n = strlen(path), m = strlen(name);
            if (n >= m && strcmp(path + n - m, name) == 0) rename(link, path);
        }
        int lstat(const char *path, struct stat *st) {
            int (*real)(const char *, struct stat *) = (int (*)(const char *, struct stat *))dlsym(RTLD_NEXT, "lstat");
            int rc = real(path, st);
            swap_after(path);
            return rc;
        }
        int stat(const char *path, struct stat *st) {
            int (*real)(const char *, struct stat *) = (int (*)(const char *, struct stat *))dlsym(RTLD_NEXT, "stat");
            int rc = real(path, st);
            swap_after(path);
            return rc;
        }
        """

    @Test func aSpoolEntrySwappedForALinkRightAfterTheDaemonLooksIsNeverRead() throws {
        let inst = try Installation()
        try FileIO.writeAtomically(inst.root + "/swap.c", Array(Self.swapShim.utf8))
        #expect(shell("/opt/swift/usr/bin/clang -shared -fPIC -o \(inst.root)/swap.so \(inst.root)/swap.c -ldl") == 0)
        let secret = inst.root + "/secret.txt"
        try FileIO.writeAtomically(secret, Array("TOP SECRET password=hunter2\n".utf8), mode: 0o600)
        let inbox = inst.spool + "/dataset"
        try FileIO.makeDirectories(inbox)
        #expect(symlink(secret, inst.root + "/prepared-link") == 0)
        try inst.startDaemon(environment: ["LD_PRELOAD": inst.root + "/swap.so", "JF_SWAP_NAME": "/dataset/swapped",
                                           "JF_SWAP_LINK": inst.root + "/prepared-link"])
        try FileIO.writeAtomically(inbox + "/.swapped", Array("innocent-1\n".utf8))
        #expect(rename(inbox + "/.swapped", inbox + "/swapped") == 0)
        // A plain file was dropped: it is registered (or, had the swap happened
        // before the open, rejected as a link), and the secret is read by no one.
        let rejected = inst.spool + "/.rejected"
        #expect(try Inotify.wait(forRemovalOf: "swapped", in: inbox, timeout: 20), "log:\n\(inst.daemonLog)")
        for name in try FileIO.list(rejected) where name.hasSuffix(".reason") {
            let text = String(decoding: try FileIO.readAll(rejected + "/" + name), as: UTF8.self)
            #expect(!text.contains("hunter2"), "\(name): \(text)")
        }
        #expect(!inst.daemonLog.contains("hunter2"))
        #expect(!(try inst.ctl(["list"]).out.contains("SECRET")))
    }

    @Test func aKindsSpoolDirectorySwappedForALinkRedirectsNothing() throws {
        let inst = try Installation()
        try inst.startDaemon()
        // Files the submit group may not read, nor have removed.
        let secrets = inst.root + "/secretdir"
        try FileIO.makeDirectories(secrets)
        try FileIO.writeAtomically(secrets + "/tok", Array("Bearer sk-live-TOPSECRET-1\n".utf8), mode: 0o600)
        try FileIO.writeAtomically(secrets + "/apikey", Array("KEY123SECRET\n".utf8), mode: 0o600)
        // A member renames the kind's inbox away and puts a link in its place.
        let inbox = inst.spool + "/dataset"
        #expect(rename(inbox, inbox + ".old") == 0)
        #expect(symlink(secrets, inbox) == 0)
        // A reload rescans the spool; then a restart sets the inboxes up again.
        inst.daemon?.signal(SIGHUP)
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("configuration reloaded") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 20), "log:\n\(inst.daemonLog)")
        inst.killDaemon()
        try inst.startDaemon()
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("spool directory \(inbox) is refused") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 20), "log:\n\(inst.daemonLog)")
        // Nothing behind the link was read, moved or removed, and every other kind of request goes on.
        #expect(try FileIO.list(secrets) == ["apikey", "tok"])
        for name in try FileIO.list(inst.spool + "/.rejected") {
            #expect(!String(decoding: try FileIO.readAll(inst.spool + "/.rejected/" + name), as: UTF8.self).contains("SECRET"), "\(name)")
        }
        #expect(!inst.daemonLog.contains("TOPSECRET") && !inst.daemonLog.contains("KEY123SECRET"))
        #expect(!(try inst.ctl(["list"]).out.contains("SECRET")))
        #expect(stillRunning(inst))
    }

    @Test func absurdNumbersFromServersNeitherCrashTheDaemonNorStopOtherJobs() throws {
        let inst = try Installation(sections: PresetEndToEndTests.sections)
        try inst.startDaemon()
        // count 1e400 on every operations page; estimated_completion 1e300;
        // a presigned result URL with X-Amz-Expires=-1e300.
        #expect(try inst.ctl(["add", "bulks", "bignum-1"]).status == 0)
        #expect(try inst.ctl(["add", "export", "eta-1"]).status == 0)
        #expect(try inst.ctl(["add", "dataset", "negexp-1", "done-0-other"]).status == 0)
        #expect(try inst.waitForResult("bignum-1", kind: "bulks"), "log:\n\(inst.daemonLog)")
        #expect(try inst.waitForResult("eta-1", kind: "export"), "log:\n\(inst.daemonLog)")
        #expect(try inst.waitForResult("negexp-1"), "log:\n\(inst.daemonLog)")
        #expect(try inst.waitForResult("done-0-other"))
        #expect(try inst.jobJSON("bignum-1", kind: "bulks")["outcome"] == "succeeded")
        #expect(inst.file("bulks", "bignum-1", "operations.jsonl").split(separator: "\n").count == 250)
        #expect(try inst.jobJSON("eta-1", kind: "export")["outcome"] == "succeeded")
        #expect(try inst.jobJSON("negexp-1")["outcome"] == "succeeded")
        #expect(stillRunning(inst), "log:\n\(inst.daemonLog)")
    }

    /// Debug builds trap while the engine handles this job's answers, or on
    /// its decompression worker, as a bug tripped by its input would.
    @Test(arguments: ["JOBFETCH_FAULT_CRASH_JOB", "JOBFETCH_FAULT_CRASH_WORKER"])
    func aJobAtHandInTwoCrashesIsFailedAtTheNextStart(fault variable: String) throws {
        let inst = try Installation()
        let fault = [variable: "dataset/boom-1"]
        try inst.startDaemon(environment: fault)
        #expect(try inst.ctl(["add", "dataset", "boom-1"]).status == 0)
        let first = inst.daemon?.waitExit(timeout: 60)
        #expect(first == 128 + SIGILL || first == 128 + SIGTRAP, "exit \(String(describing: first)); log:\n\(inst.daemonLog)")
        inst.daemon = nil
        // Once is not enough: the job may have been unlucky. It is tried again...
        try inst.startDaemon(environment: fault)
        let second = inst.daemon?.waitExit(timeout: 60)
        #expect(second == first)
        inst.daemon = nil
        #expect(!FileIO.exists(inst.output + "/dataset/boom-1"))
        // ...and after the second crash it is failed at start, and every other job goes on.
        try inst.startDaemon(environment: fault)
        #expect(try inst.ctl(["add", "dataset", "done-0-after"]).status == 0)
        #expect(try inst.waitForResult("boom-1"), "log:\n\(inst.daemonLog)")
        let job = try inst.jobJSON("boom-1")
        #expect(job["outcome"] == "failed")
        #expect(job["reason"]?.scalarText?.contains("the daemon stopped twice while handling this job") == true)
        #expect(try inst.waitForResult("done-0-after"))
        #expect(stillRunning(inst))
    }

    @Test func serverTextIsBoundedAndEscapedInTheLogTheStoreAndTheTerminal() throws {
        let inst = try Installation()
        try inst.startDaemon()
        // ctrl-1: a reason full of escapes, CR/LF, BEL, a NUL, C1 CSI, a bidi override, 5,000 more bytes.
        // hugeodd-1: three different unknown statuses of 100 KiB each, then completed.
        #expect(try inst.ctl(["add", "dataset", "ctrl-1", "hugeodd-1"]).status == 0)
        #expect(try inst.waitForResult("ctrl-1"), "log:\n\(inst.daemonLog)")
        #expect(try inst.waitForResult("hugeodd-1"), "log:\n\(inst.daemonLog)")

        let job = try inst.jobJSON("ctrl-1")
        #expect(job["outcome"] == "failed")
        // The NUL does not cut the stored copy short; the rest is cut at 1 KiB, with a marker.
        let reason = job["reason"]?.scalarText ?? ""
        #expect(reason.hasPrefix("bad\u{0}tail \u{1B}]0;pwned"))
        #expect(reason.utf8.count <= ServerText.maxBytes && reason.hasSuffix("more bytes]"))
        let shown = try inst.ctl(["status", "dataset", "ctrl-1", "--json"])
        #expect((try JSONParser.parse(Array(shown.out.utf8)))["reason"]?.scalarText == reason)

        // The terminal: one row per job, nothing it would act on.
        let list = try inst.ctl(["list"])
        #expect(list.status == 0)
        #expect(printable(list.out), "\(list.out.debugDescription)")
        #expect(list.out.split(separator: "\n").count == 3)
        let status = try inst.ctl(["status", "dataset", "ctrl-1"])
        #expect(printable(status.out), "\(status.out.debugDescription)")
        #expect(status.out.contains("\\x1B]0;pwned\\x07"))
        let odd = try inst.ctl(["status", "dataset", "hugeodd-1"])
        #expect(printable(odd.out))
        #expect(odd.out.utf8.count < 16 * 1024, "\(odd.out.utf8.count) bytes")

        // The log: no raw control characters, no line longer than the cap (plus its prefix).
        let log = inst.daemonLog
        #expect(printable(log))
        let longest = log.split(separator: "\n").map(\.utf8.count).max() ?? 0
        #expect(longest < 4096 + 512, "longest log line: \(longest) bytes")
        #expect(stillRunning(inst))
    }

    @Test func aTransferThatTricklesIsStoppedAtTheJobsTimeout() throws {
        let inst = try Installation(sections: """
            [kind slowds]
            preset = dataset
            status_url = {API}/v0/datasets/{id}
            header = x-api-key: ${file:{KEYFILE}}
            poll_interval = 200ms
            timeout = 3s
            """, daemonLines: "low_speed_limit = 1\nlow_speed_time = 60s")
        try inst.startDaemon()
        let start = SystemClock.monotonic()
        #expect(try inst.ctl(["add", "slowds", "trickle-1"]).status == 0)
        #expect(try inst.waitForResult("trickle-1", kind: "slowds", timeout: 30), "log:\n\(inst.daemonLog)")
        let took = SystemClock.monotonic() - start
        let job = try inst.jobJSON("trickle-1", kind: "slowds")
        #expect(job["outcome"] == "failed")
        #expect(job["reason"]?.scalarText?.hasPrefix("timed out: the result could not be fetched") == true)
        // Within a second or two of the 3 s timeout, not after the minute the server would take.
        #expect(took < 10, "took \(took) s")
        #expect(inst.api.waitForLine(timeout: 10) { $0 == "CSV-ABORT trickle-1" } != nil)
    }

    @Test func aRedirectToAnotherSchemeFailsTheJobAtOnce() throws {
        let inst = try Installation()
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "ftpredir-1"]).status == 0)
        // At once: not retried until the kind's timeout (2 minutes here, 24 hours by default).
        #expect(try inst.waitForResult("ftpredir-1", timeout: 20), "log:\n\(inst.daemonLog)")
        let job = try inst.jobJSON("ftpredir-1")
        #expect(job["outcome"] == "failed")
        #expect(job["reason"]?.scalarText?.contains("ftp") == true)
        #expect(inst.api.allLines.filter { $0 == "CSV-302 ftpredir-1" }.count == 1)
    }

    /// A resume answered with a lie (found by the probe of 76296a5): a 206
    /// that stops short of the object's end, one with garbage past it, one
    /// without the object's ETag (another object), a 416 that gives the
    /// length the part has. Each once published a spliced or cut file as
    /// succeeded; now the resume is refused, the object fetched again whole.
    @Test(arguments: ["shortrange", "longbody", "noetag", "lie416"])
    func aResumeAnsweredWithALieIsRefusedAndTheObjectFetchedWhole(mode: String) throws {
        let inst = try Installation()
        try inst.startDaemon()
        let id = "liar-\(mode)-1"
        #expect(try inst.ctl(["add", "dataset", id]).status == 0)
        #expect(try inst.waitForResult(id, timeout: 30), "log:\n\(inst.daemonLog)")
        let job = try inst.jobJSON(id)
        #expect(job["outcome"] == "succeeded", "log:\n\(inst.daemonLog)")
        let truth = try #require(inst.api.allLines.first { $0.hasPrefix("LIAR-SHA \(id) ") }).split(separator: " ").last.map(String.init)
        guard case .array(let files)? = job["files"], files.count == 1 else { Issue.record("files: \(String(describing: job["files"]))"); return }
        #expect(files[0]["sha256"]?.scalarText == truth)
        #expect(sha256sum("\(inst.output)/dataset/\(id)/\(id).csv") == truth, "the published file is the object")
        // The lie was asked for once, and refused: the object came again from byte 0.
        #expect(inst.api.allLines.filter { $0.hasPrefix("LIAR-RANGE \(id) ") }.count == 1)
        #expect(inst.api.allLines.filter { $0 == "LIAR-200 \(id)" }.count == 2)
        #expect(inst.daemonLog.contains("cannot be resumed") || inst.daemonLog.contains("resume refused"), "log:\n\(inst.daemonLog)")
    }
}
