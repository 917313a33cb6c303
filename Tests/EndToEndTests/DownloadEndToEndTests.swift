import Foundation
import Glibc
import JobFetchArtifacts
import JobFetchCore
import JobFetchStore
import Testing
import TestSupport

/// Downloads against a real nginx: resume after kill -9 (Range + If-Range),
/// servers that ignore ranges, files replaced between attempts, 416 on a
/// whole file, gzip edge cases, bombs, expired presigned URLs, redirects.
@Suite(.serialized) struct DownloadEndToEndTests {
    func setUp(daemonLines: String = "") throws -> (Installation, Nginx) {
        let inst = try Installation(daemonLines: daemonLines)
        let nginx = try Nginx(root: inst.root + "/nginx")
        return (inst, nginx)
    }


    func request(_ line: String, _ path: String) -> Bool { line.hasPrefix("GET \(path) ") }

    @Test func killDuringTransferResumesWithRangeAndIfRange() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 1)
        try FileIO.writeAtomically(nginx.www + "/slow/big.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-big", "/slow/big.bin")
        let part = try #require(try inst.waitForPart("ext-big"))
        inst.killDaemon()
        #expect(part.etag != nil && part.length == Int64(data.count))
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-big"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-big/big.bin", limit: 64 << 20) == data)
        guard case .array(let files)? = try inst.jobJSON("ext-big")["files"] else { Issue.record("no files"); return }
        #expect(files.first?["sha256"]?.scalarText == sha256sum("\(inst.output)/dataset/ext-big/big.bin"))
        let lines = nginx.accessLog.filter { request($0, "/slow/big.bin") }
        let resumed = try #require(lines.last)
        let from = Int64(logField(resumed, "range").dropFirst(6).dropLast()) ?? -1
        #expect(logField(resumed, "status") == "206", "\(lines)")
        #expect(from >= part.synced && from < Int64(data.count), "resumed from \(from), sidecar had \(part.synced)")
        #expect(logField(resumed, "if_range") == part.etag)
        // A resumed request never asks for an encoding, and nginx is another origin: no credentials.
        #expect(logField(resumed, "ae").isEmpty)
        #expect(lines.allSatisfy { logField($0, "key").isEmpty })
        #expect(inst.daemonLog.contains("dataset/ext-big: resuming \(nginx.base)/slow/big.bin from"))
        #expect(!FileIO.exists("\(inst.output)/dataset/ext-big/.artifact.part.json"))
    }

    /// Starts `id` on the slow location, lets it run until its part holds
    /// `margin` bytes more than its last checkpoint recorded, and kills the
    /// daemon; returns the sidecar and the part's length as the kill left them.
    func killPastTheCheckpoint(_ inst: Installation, _ nginx: Nginx, _ id: String, _ data: [UInt8],
                               margin: Int64) throws -> (part: PartSidecar, kept: Int64) {
        try FileIO.writeAtomically(nginx.www + "/slow/\(id).bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, id, "/slow/\(id).bin")
        let checkpoint = try #require(try inst.waitForPart(id))
        let staging = inst.output + "/.incoming/dataset/" + id
        _ = try Inotify.wait(until: { (FileIO.size(staging + "/.artifact.part") ?? 0) >= checkpoint.synced + margin },
                             in: staging, mask: UInt32(IN_MODIFY), timeout: 30)
        inst.killDaemon()
        let part = try #require(PartSidecar.load(part: staging + "/.artifact.part"))
        return (part, FileIO.size(staging + "/.artifact.part") ?? 0)
    }

    /// SPEC "Resume cost": after a kill -9 on the same boot, nothing the
    /// daemon wrote is fetched again: the resume asks for the part's length
    /// as the kill left it. (What nginx had sent that the daemon had not yet
    /// read, in libcurl's buffer and the sockets', is fetched again: nginx
    /// sends `limit_rate` in bursts of up to 2 MiB, so its count of re-sent
    /// bytes is not asserted here.)
    @Test func aKillOnTheSameBootFetchesNothingWrittenAgain() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 11)
        // Past the checkpoint by 1.5 MiB, so a resume from the checkpoint would be seen.
        let (part, kept) = try killPastTheCheckpoint(inst, nginx, "ext-kill", data, margin: 3 << 19)
        #expect(kept > part.synced, "the part holds \(kept), the checkpoint \(part.synced)")
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-kill"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-kill/ext-kill.bin", limit: 64 << 20) == data)
        let lines = nginx.accessLog.filter { request($0, "/slow/ext-kill.bin") }
        let resumed = try #require(lines.last)
        #expect(logField(resumed, "range") == "bytes=\(kept)-" && logField(resumed, "status") == "206", "\(lines)")
        #expect(logField(resumed, "sent") == String(Int64(data.count) - kept), "\(resumed)")
    }

    /// After a reboot the page cache is gone: bytes past the last checkpoint
    /// may be garbage, and the download resumes from the checkpoint. (A
    /// reboot is a sidecar written in another boot.)
    @Test func afterARebootTheDownloadResumesFromTheLastCheckpoint() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 12)
        var (part, kept) = try killPastTheCheckpoint(inst, nginx, "ext-reboot", data, margin: 1 << 20)
        #expect(kept > part.synced && part.synced > 0)
        part.boot = "00000000-0000-0000-0000-000000000000"
        try part.save(part: inst.output + "/.incoming/dataset/ext-reboot/.artifact.part")
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-reboot"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-reboot/ext-reboot.bin", limit: 64 << 20) == data)
        let resumed = try #require(nginx.accessLog.filter { request($0, "/slow/ext-reboot.bin") }.last)
        #expect(logField(resumed, "range") == "bytes=\(part.synced)-" && logField(resumed, "status") == "206", "\(resumed)")
    }

    @Test func aServerThatIgnoresRangeRestartsFromZero() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 2)
        try FileIO.writeAtomically(nginx.www + "/noranges/big.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-norange", "/noranges/big.bin")
        #expect(try inst.waitForPart("ext-norange") != nil)
        inst.killDaemon()
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-norange"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-norange/big.bin", limit: 64 << 20) == data)
        let last = try #require(nginx.accessLog.filter { request($0, "/noranges/big.bin") }.last)
        #expect(logField(last, "range").hasPrefix("bytes="))
        #expect(logField(last, "status") == "200")
    }

    @Test func aFileReplacedBetweenAttemptsIsFetchedWhole() throws {
        let (inst, nginx) = try setUp()
        let old = pseudoRandomBytes(12 << 20, seed: 3)
        let new = pseudoRandomBytes(10 << 20, seed: 4)
        try FileIO.writeAtomically(nginx.www + "/slow/replaced.bin", old)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-replaced", "/slow/replaced.bin")
        let part = try #require(try inst.waitForPart("ext-replaced"))
        inst.killDaemon()
        try FileIO.writeAtomically(nginx.www + "/slow/replaced.bin", new)
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-replaced"), "log:\n\(inst.daemonLog)")
        // If-Range carried the old ETag: nginx sent the new file whole, nothing was spliced.
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-replaced/replaced.bin", limit: 64 << 20) == new)
        let last = try #require(nginx.accessLog.filter { request($0, "/slow/replaced.bin") }.last)
        #expect(logField(last, "if_range") == part.etag)
        #expect(logField(last, "status") == "200")
    }

    @Test func a416OnAWholePartIsSuccess() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(300_000, seed: 5)
        try FileIO.writeAtomically(nginx.www + "/whole.bin", data)
        // The state a crash right after the last byte leaves: the job fetching, its part whole.
        let url = nginx.base + "/whole.bin"
        let etag = try #require(Self.etag(url))
        try FileIO.makeDirectories(inst.root + "/state")
        do {
            let store = try JobStore(path: inst.root + "/state/jobfetchd.sqlite")
            let key = JobKey(kind: "dataset", id: try JobID("ext-whole"))
            try store.register([key], now: SystemClock.now())
            var r = try #require(try store.job(key))
            r.state = .fetching
            r.resultURL = url
            try store.save(r)
        }
        let staging = inst.output + "/.incoming/dataset/ext-whole"
        try FileIO.makeDirectories(staging)
        try FileIO.writeAtomically(staging + "/.artifact.part", data)
        try PartSidecar(url: url, etag: etag, lastModified: nil, length: Int64(data.count), synced: Int64(data.count), encoding: nil)
            .save(part: staging + "/.artifact.part")
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-whole"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-whole/whole.bin") == data)
        let last = try #require(nginx.accessLog.filter { request($0, "/whole.bin") }.last)
        #expect(logField(last, "range") == "bytes=\(data.count)-")
        #expect(logField(last, "status") == "416")
    }

    @Test func gzipTruncatedMultiMemberAndBombs() throws {
        let (inst, nginx) = try setUp(daemonLines: "max_output_size = 4M")
        let a = Array("first member\n".utf8) + pseudoRandomBytes(100_000, seed: 6)
        let b = Array("second member\n".utf8)
        try FileIO.writeAtomically(nginx.www + "/multi.csv.gz", try Self.gzip(a) + Self.gzip(b))
        let whole = try Self.gzip(pseudoRandomBytes(200_000, seed: 7))
        try FileIO.writeAtomically(nginx.www + "/trunc.csv.gz", Array(whole.dropLast(20)))
        try FileIO.writeAtomically(nginx.www + "/bomb.csv.gz", try Self.gzip([UInt8](repeating: 0, count: 64 << 20)))
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-multi", "/multi.csv.gz")
        try addExternal(inst, nginx, "ext-trunc", "/trunc.csv.gz")
        try addExternal(inst, nginx, "ext-bomb", "/bomb.csv.gz")
        for id in ["ext-multi", "ext-trunc", "ext-bomb"] { #expect(try inst.waitForResult(id), "\(id)") }
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-multi/multi.csv") == a + b)
        // Hashed while it was decompressed: the digest is the published file's.
        guard case .array(let files)? = try inst.jobJSON("ext-multi")["files"] else { Issue.record("no files"); return }
        #expect(files.first?["sha256"]?.scalarText == sha256sum("\(inst.output)/dataset/ext-multi/multi.csv"))
        let trunc = try inst.jobJSON("ext-trunc")
        #expect(trunc["outcome"] == "failed")
        #expect(trunc["reason"]?.scalarText?.contains("truncated") == true, "\(String(describing: trunc["reason"]))")
        let bomb = try inst.jobJSON("ext-bomb")
        #expect(bomb["outcome"] == "failed")
        #expect(bomb["reason"]?.scalarText?.contains("max_output_size") == true, "\(String(describing: bomb["reason"]))")
        #expect(try FileIO.list("\(inst.output)/dataset/ext-bomb") == ["job.json"])
    }

    /// A gzip artifact that goes bad early (corrupt 1 MB in, fetched over
    /// four connections at 512 KB/s each; a bomb in its first member) fails
    /// as soon as the decompressor meets the fault: every connection stops
    /// there instead of fetching the rest (25 MB) only to fail at its end.
    @Test func aCompressedArtifactThatCannotBeDecodedStopsItsDownloadAtTheFault() throws {
        let (inst, nginx) = try setUp(daemonLines: "max_output_size = 4M\nsegments = 4\nsegment_min_size = 4M")
        let rest = try Self.gzip(pseudoRandomBytes(24 << 20, seed: 40))
        var corrupt = try Self.gzip(pseudoRandomBytes(2 << 20, seed: 41)) + rest
        for i in 1_000_000..<1_000_064 { corrupt[i] ^= 0x5A }
        try FileIO.writeAtomically(nginx.www + "/slow/corrupt.csv.gz", corrupt)
        let bomb = try Self.gzip([UInt8](repeating: 0, count: 64 << 20)) + rest
        try FileIO.writeAtomically(nginx.www + "/slow/bomb.csv.gz", bomb)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-corrupt", "/slower/corrupt.csv.gz")
        try addExternal(inst, nginx, "ext-bomb", "/slow/bomb.csv.gz")
        let cases: [(String, String, String, Int)] = [("ext-corrupt", "/slower/corrupt.csv.gz", "corrupt", corrupt.count),
                                                      ("ext-bomb", "/slow/bomb.csv.gz", "max_output_size", bomb.count)]
        for (id, path, why, size) in cases {
            #expect(try inst.waitForResult(id), "\(id); log:\n\(inst.daemonLog)")
            let job = try inst.jobJSON(id)
            #expect(job["outcome"] == "failed")
            #expect(job["reason"]?.scalarText?.contains(why) == true, "\(id): \(String(describing: job["reason"]))")
            let lines = nginx.accessLog.filter { request($0, path) }
            let sent = lines.compactMap { Int(logField($0, "sent")) }.reduce(0, +)
            #expect(sent > 0 && sent < size / 2, "\(id): \(sent) of \(size) bytes sent over \(lines.count) requests")
            #expect(inst.daemonLog.components(separatedBy: "dataset/\(id): stopped downloading").count == 2, "once, not retried: \(inst.daemonLog)")
            #expect(!FileIO.exists("\(inst.output)/.incoming/dataset/\(id)"), "nothing left in staging")
        }
        // The corrupt one was split before its fault arrived: every connection stopped.
        #expect(inst.daemonLog.contains("dataset/ext-corrupt: splitting"), "\(inst.daemonLog)")
        #expect(nginx.accessLog.filter { request($0, "/slower/corrupt.csv.gz") }.count >= 2)
    }

    @Test func anExpiredPresignedURLIsRefreshedAndThePartResumed() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 8)
        try FileIO.writeAtomically(nginx.www + "/slow/exp.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "expiring-x", "/slow/exp.bin")
        // The first checkpoint comes a second after the transfer started: the URL (1 s) has expired.
        let part = try #require(try inst.waitForPart("expiring-x"))
        inst.killDaemon()
        try inst.startDaemon()
        #expect(try inst.waitForResult("expiring-x"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/expiring-x/exp.bin", limit: 64 << 20) == data)
        #expect(inst.daemonLog.contains("dataset/expiring-x: result URL \(nginx.base)/slow/exp.bin: its expiry"))
        // Refreshed at least once (a loaded machine may take longer than the new URL's 1 s to resume, and refresh again).
        #expect(inst.api.allLines.filter { $0 == "STATUS expiring-x completed" }.count >= 2)
        let last = try #require(nginx.accessLog.filter { request($0, "/slow/exp.bin") }.last)
        #expect(logField(last, "status") == "206")
        #expect(logField(last, "if_range") == part.etag)
        #expect(!inst.daemonLog.contains("sig-5ecret-do-not-log"))
    }

    @Test func aRedirectToAnotherOriginGetsNoCredentials() throws {
        let (inst, nginx) = try setUp()
        let data = Array("id,v\n1,2\n".utf8)
        try FileIO.writeAtomically(nginx.www + "/moved.csv", data)
        try FileIO.writeAtomically(inst.dataDir + "/redir-x.url", Array((nginx.base + "/moved.csv").utf8))
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "redir-x"]).status == 0)
        #expect(try inst.waitForResult("redir-x"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/redir-x/moved.csv") == data)
        #expect(inst.api.allLines.contains("REQ GET /v0/datasets/redir-x/csv key=yes"))
        let hop = try #require(nginx.accessLog.first { request($0, "/moved.csv") })
        #expect(logField(hop, "key").isEmpty)
        #expect(logField(hop, "auth").isEmpty)
    }

    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let dir = NSTemporaryDirectory() + "/jf-gz-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileIO.makeDirectories(dir)
        defer { try? FileIO.removeTree(dir) }
        try FileIO.writeAtomically(dir + "/x", bytes)
        guard shell("gzip -n -6 \(dir)/x") == 0 else { throw JobFetchError("gzip failed") }
        return try FileIO.readAll(dir + "/x.gz", limit: 256 << 20)
    }

    /// The ETag nginx gives `url`, read with curl.
    static func etag(_ url: String) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sI", url]
        let out = Pipe()
        p.standardOutput = out
        try? p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("etag:") }
            .map { $0.dropFirst(5).trimmingCharacters(in: .whitespaces) }
    }

    @Test func zipArchivesAreExtractedWithEveryPathChecked() throws {
        let (inst, nginx) = try setUp()
        let script = """
            import sys, zipfile
            www = sys.argv[1]
            with zipfile.ZipFile(www + "/good.zip", "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("data/a.csv", "id,v\\n" + "1,2\\n" * 1000)
                z.writestr("b.txt", "hello")
                z.writestr("job.json", "{}")
            with zipfile.ZipFile(www + "/evil.zip", "w") as z:
                z.writestr("ok.txt", "fine")
                z.writestr("../evil.txt", "escaped")
            with zipfile.ZipFile(www + "/link.zip", "w") as z:
                info = zipfile.ZipInfo("passwd")
                info.external_attr = 0o120777 << 16
                z.writestr(info, "/etc/passwd")
            with zipfile.ZipFile(www + "/empty.zip", "w") as z:
                pass
            """
        try FileIO.writeAtomically(inst.root + "/mkzip.py", Array(script.utf8))
        #expect(shell("python3 \(inst.root)/mkzip.py \(nginx.www)") == 0)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-zip", "/good.zip")
        try addExternal(inst, nginx, "ext-evil", "/evil.zip")
        try addExternal(inst, nginx, "ext-link", "/link.zip")
        try addExternal(inst, nginx, "ext-empty", "/empty.zip")
        for id in ["ext-zip", "ext-evil", "ext-link", "ext-empty"] { #expect(try inst.waitForResult(id), "\(id)") }

        let dir = "\(inst.output)/dataset/ext-zip"
        let good = try inst.jobJSON("ext-zip")
        #expect(good["outcome"] == "succeeded", "\(String(describing: good["reason"]))")
        guard case .array(let files)? = good["files"] else { Issue.record("no files"); return }
        #expect(files.compactMap { $0["name"]?.scalarText } == ["artifact-job.json", "b.txt", "data/a.csv"])
        for f in files {
            let name = f["name"]?.scalarText ?? ""
            #expect(f["sha256"]?.scalarText == sha256sum(dir + "/" + name), "\(name)")
        }
        #expect(try FileIO.readAll(dir + "/b.txt") == Array("hello".utf8))
        #expect(!FileIO.exists(dir + "/good.zip"))

        let evil = try inst.jobJSON("ext-evil")
        #expect(evil["outcome"] == "failed")
        #expect(evil["reason"]?.scalarText?.contains("unsafe zip archive: entry \"../evil.txt\" has a \"..\" component") == true,
                "\(String(describing: evil["reason"]))")
        #expect(!FileIO.exists("\(inst.output)/.incoming/dataset/evil.txt"))
        #expect(!FileIO.exists("\(inst.output)/dataset/evil.txt"))
        let link = try inst.jobJSON("ext-link")
        #expect(link["outcome"] == "failed")
        // Links are never extracted; an archive of nothing else has nothing to publish.
        #expect(link["reason"]?.scalarText?.contains("holds no file that could be extracted (zip entry \"passwd\" is a symbolic link") == true,
                "\(String(describing: link["reason"]))")
        // An empty archive fails too (before, a result with no file was fetched again for ever).
        #expect(try inst.jobJSON("ext-empty")["reason"]?.scalarText?.contains("holds no file that could be extracted") == true)
    }

    @Test func belowMinFreeSpaceDownloadsWaitAndThenGoOn() throws {
        let (inst, nginx) = try setUp(daemonLines: "min_free_space = 100000G")
        try FileIO.writeAtomically(nginx.www + "/small.csv", Array("id\n1\n".utf8))
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-space", "/small.csv")
        // The job completes at the API, then waits: no download starts.
        #expect(inst.api.waitForLine { $0 == "STATUS ext-space completed" } != nil)
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("dataset/ext-space: waiting for disk space:") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 30))
        #expect(nginx.accessLog.filter { request($0, "/small.csv") }.isEmpty)
        #expect(try inst.ctl(["status", "dataset", "ext-space"]).out.contains("last error:  waiting for disk space"))
        // With space (the limit lowered), the download goes on.
        inst.killDaemon()
        let conf = try String(decoding: FileIO.readAll(inst.configPath), as: UTF8.self).replacingOccurrences(of: "min_free_space = 100000G", with: "min_free_space = 0")
        try FileIO.writeAtomically(inst.configPath, Array(conf.utf8))
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-space"))
        #expect(try inst.jobJSON("ext-space")["outcome"] == "succeeded")
    }

    @Test func aDroppedConnectionResumesWhereTheDataIsOnDisk() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 9)
        try FileIO.writeAtomically(nginx.www + "/slow/net.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-net", "/slow/net.bin")
        let part = try #require(try inst.waitForPart("ext-net"))
        // The server goes away mid-transfer; the daemon stays up and retries.
        nginx.kill()
        #expect(try Inotify.wait(until: { inst.daemonLog.contains("dataset/ext-net: download from") }, in: inst.root,
                                 mask: UInt32(IN_MODIFY), timeout: 30))
        try nginx.restart()
        #expect(try inst.waitForResult("ext-net"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-net/net.bin", limit: 64 << 20) == data)
        let last = try #require(nginx.accessLog.filter { request($0, "/slow/net.bin") && logField($0, "status") == "206" }.last)
        let from = Int64(logField(last, "range").dropFirst(6).dropLast()) ?? -1
        #expect(from >= part.synced, "resumed from \(from)")
        #expect(inst.daemonLog.contains("it resumes from there"))
    }

    @Test func maxArtifactSizeIsCheckedBeforeWriting() throws {
        let (inst, nginx) = try setUp(daemonLines: "max_artifact_size = 100k")
        try FileIO.writeAtomically(nginx.www + "/large.bin", pseudoRandomBytes(300_000, seed: 10))
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-large", "/large.bin")
        #expect(try inst.waitForResult("ext-large"))
        let job = try inst.jobJSON("ext-large")
        #expect(job["outcome"] == "failed")
        #expect(job["reason"] == .string("the result at \(nginx.base)/large.bin is larger than max_artifact_size (100.0 KiB)"))
        // Refused on its Content-Length: not a byte reached the part.
        #expect(!inst.daemonLog.contains("ext-large: downloaded"))
        #expect(try FileIO.list("\(inst.output)/dataset/ext-large") == ["job.json"])
    }

    @Test func sigtermCheckpointsTheWholePartSoNothingIsSentTwice() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 11)
        try FileIO.writeAtomically(nginx.www + "/slow/term.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-term", "/slow/term.bin")
        #expect(try inst.waitForPart("ext-term") != nil)
        inst.daemon?.signal(SIGTERM)
        #expect(inst.daemon?.waitExit() == 0)
        inst.daemon = nil
        // Every byte that arrived is on disk and recorded.
        let partPath = "\(inst.output)/.incoming/dataset/ext-term/.artifact.part"
        let part = try #require(PartSidecar.load(part: partPath))
        #expect(part.synced == FileIO.size(partPath))
        #expect(inst.daemonLog.contains("dataset/ext-term: download interrupted by shutdown at"))
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-term"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-term/term.bin", limit: 64 << 20) == data)
        let last = try #require(nginx.accessLog.filter { request($0, "/slow/term.bin") }.last)
        #expect(logField(last, "range") == "bytes=\(part.synced)-")
        #expect(logField(last, "status") == "206")
    }

    @Test func listShowsLiveBytesRateAndETA() throws {
        let (inst, nginx) = try setUp()
        try FileIO.writeAtomically(nginx.www + "/slow/live.bin", pseudoRandomBytes(12 << 20, seed: 12))
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-live", "/slow/live.bin")
        // The engine records progress once a second; wait on the database's writes.
        var row: JSONValue?
        _ = try Inotify.wait(until: {
            guard let out = try? inst.ctl(["list", "--json"]).out, case .array(let rows)? = try? JSONParser.parse(out) else { return false }
            row = rows.first { $0["id"] == "ext-live" && $0["state"] == "fetching" && $0["rate"] != .null && $0["eta_seconds"] != .null }
            return row != nil
        }, in: inst.root + "/state", mask: UInt32(IN_MODIFY), timeout: 30)
        let live = try #require(row)
        #expect(live["bytes_total"] == .int(12 << 20))
        let done = live["bytes_done"]?.doubleValue ?? 0
        #expect(done > 0 && done < Double(12 << 20))
        // nginx sends 2 MB/s; the rate is of that order.
        let rate = live["rate"]?.doubleValue ?? 0
        #expect(rate > 1e6 && rate < 2e7, "rate \(rate)")
        let table = try inst.ctl(["list"]).out
        #expect(table.contains("RATE") && table.contains("ETA") && table.contains("/s"), "\(table)")
        #expect(!table.contains("\u{1B}["), "no colours when stdout is not a terminal")
        #expect(try inst.waitForResult("ext-live"))
    }
}
