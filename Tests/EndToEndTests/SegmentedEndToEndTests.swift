import Foundation
import Glibc
import JobFetchArtifacts
import JobFetchCore
import Testing
import TestSupport

/// Segmented downloads against a real nginx whose `/slower/` location caps
/// each request at 512 KB/s (`limit_rate`): an artifact from a server that
/// serves ranges goes over several connections, each a `Range` with
/// `If-Range`; `max_ranges 0` falls back to one stream; a kill -9 resumes
/// every segment where it stopped; a file replaced mid-way is never spliced.
@Suite(.serialized) struct SegmentedEndToEndTests {
    static let daemonLines = "segments = 4\nsegment_min_size = 4M"

    func setUp(_ extra: String = "") throws -> (Installation, Nginx) {
        let inst = try Installation(daemonLines: Self.daemonLines + extra)
        return (inst, try Nginx(root: inst.root + "/nginx"))
    }

    func add(_ inst: Installation, _ nginx: Nginx, _ id: String, _ path: String) throws {
        try FileIO.writeAtomically(inst.dataDir + "/\(id).url", Array((nginx.base + path).utf8))
        #expect(try inst.ctl(["add", "dataset", id]).status == 0)
    }

    func lines(_ nginx: Nginx, _ path: String) -> [String] { nginx.accessLog.filter { $0.hasPrefix("GET \(path) ") } }
    /// `bytes=a-b` → (a, b); nil for no range or an open one.
    func closedRange(_ line: String) -> (Int64, Int64)? {
        let r = logField(line, "range")
        guard r.hasPrefix("bytes=") else { return nil }
        let parts = r.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int64(parts[0]), let b = Int64(parts[1]) else { return nil }
        return (a, b)
    }

    /// Waits until the job's sidecar records segments, three of them with flushed bytes; returns it.
    func waitForSegments(_ inst: Installation, _ id: String) throws -> PartSidecar? {
        let staging = inst.output + "/.incoming/dataset/" + id
        guard try Inotify.wait(for: ".incoming", in: inst.output, timeout: 30),
              try Inotify.wait(for: "dataset", in: inst.output + "/.incoming", timeout: 30),
              try Inotify.wait(for: id, in: inst.output + "/.incoming/dataset", timeout: 30) else { return nil }
        var found: PartSidecar?
        _ = try Inotify.wait(until: {
            found = PartSidecar.load(part: staging + "/.artifact.part").flatMap { s in
                (s.segments?.filter { $0.synced > $0.start }.count ?? 0) >= 3 ? s : nil
            }
            return found != nil
        }, in: staging, mask: UInt32(IN_MOVED_TO), timeout: 30)
        return found
    }

    @Test func aLargeArtifactIsFetchedOverRangedConnectionsEachAskedOnce() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(12 << 20, seed: 31)
        try FileIO.writeAtomically(nginx.www + "/slow/seg.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-one", "/slower/seg.bin")
        #expect(try inst.waitForResult("ext-seg-one"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-seg-one/seg.bin", limit: 64 << 20) == data)
        guard case .array(let files)? = try inst.jobJSON("ext-seg-one")["files"] else { Issue.record("no files"); return }
        #expect(files.first?["sha256"]?.scalarText == sha256sum("\(inst.output)/dataset/ext-seg-one/seg.bin"))
        let requests = lines(nginx, "/slower/seg.bin")
        // The first request asks for the whole object; its answer says the server
        // serves ranges, its first 0.2 s show the connection slow (512 KB/s, its first second at once), and
        // the rest is fetched in pieces of about half a second of it (1 MiB,
        // under 2 MiB with the tail), by four connections, each asked for once.
        let whole = requests.filter { logField($0, "range").isEmpty }
        #expect(whole.count == 1, "\(requests)")
        let first = try #require(whole.first)
        #expect(logField(first, "status") == "200")
        let ranged = requests.compactMap(closedRange).sorted { $0.0 < $1.0 }
        #expect(ranged.count == requests.count - 1 && ranged.count >= 5, "\(requests)")
        #expect(ranged.allSatisfy { $0.1 - $0.0 + 1 < 2 << 20 && $0.0 % 65536 == 0 }, "\(ranged)")
        let etag = DownloadEndToEndTests.etag(nginx.base + "/slower/seg.bin")
        for line in requests where line != first {
            #expect(logField(line, "status") == "206" && logField(line, "if_range") == etag, "\(line)")
            if let (a, b) = closedRange(line) { #expect(logField(line, "sent") == String(b - a + 1), "\(line)") }
        }
        // The ranges tile the object after the first piece, which the first connection fetched.
        #expect(ranged.last?.1 == Int64(data.count - 1))
        for (x, y) in zip(ranged, ranged.dropFirst()) { #expect(x.1 + 1 == y.0) }
        let firstSent = Int64(logField(first, "sent")) ?? 0
        #expect(firstSent >= ranged[0].0, "the first connection stopped at \(firstSent), before its piece's end \(ranged[0].0)")
        #expect(!FileIO.exists(inst.output + "/dataset/ext-seg-one/.artifact.part.progress"))
    }

    /// `segment_below_rate` under the connection's rate: it is not what
    /// limits the download, so it stays one stream.
    @Test func aConnectionFasterThanSegmentBelowRateIsNotSplit() throws {
        let (inst, nginx) = try setUp("\nsegment_below_rate = 128K")
        let data = pseudoRandomBytes(6 << 20, seed: 37)
        try FileIO.writeAtomically(nginx.www + "/slow/fast.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-fast", "/slow/fast.bin")
        #expect(try inst.waitForResult("ext-seg-fast"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-seg-fast/fast.bin", limit: 64 << 20) == data)
        let requests = lines(nginx, "/slow/fast.bin")
        #expect(requests.count == 1 && logField(requests[0], "status") == "200", "\(requests)")
    }

    /// `max_ranges 0`: nginx does not advertise ranges, so one stream fetches all of it.
    @Test func aServerThatServesNoRangesGetsOneStream() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(6 << 20, seed: 32)
        try FileIO.writeAtomically(nginx.www + "/noranges/one.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-none", "/noranges/one.bin")
        #expect(try inst.waitForResult("ext-seg-none"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-seg-none/one.bin", limit: 64 << 20) == data)
        let requests = lines(nginx, "/noranges/one.bin")
        #expect(requests.count == 1 && logField(requests[0], "status") == "200", "\(requests)")
    }

    /// A kill -9 with every segment running: each segment resumes on its own,
    /// with a closed range from where it stopped (this boot: what was written)
    /// and If-Range; nothing before that is asked for again.
    @Test func aKillWithSegmentsRunningResumesEverySegmentWhereItStopped() throws {
        let (inst, nginx) = try setUp()
        let data = pseudoRandomBytes(16 << 20, seed: 33)
        try FileIO.writeAtomically(nginx.www + "/slow/kill.bin", data)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-kill", "/slower/kill.bin")
        let part = try #require(try waitForSegments(inst, "ext-seg-kill"))
        inst.killDaemon()
        let killed = Date().timeIntervalSince1970
        let staging = inst.output + "/.incoming/dataset/ext-seg-kill/.artifact.part"
        let written = PartSidecar.loadProgress(part: staging)
        // What the restart resumes from: the sidecar as the kill left it.
        let atKill = try #require(PartSidecar.load(part: staging))
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-seg-kill"), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-seg-kill/kill.bin", limit: 64 << 20) == data)
        // The requests the restarted daemon made (the killed ones are logged when nginx notices).
        let resumed = lines(nginx, "/slower/kill.bin").filter { Nginx.began($0) > killed + 0.005 }
        let segments = try #require(atKill.segments)
        #expect(part.segments?.map(\.start) == segments.map(\.start), "the layout stays")
        #expect(!resumed.isEmpty && resumed.count <= segments.count, "\(resumed)")
        for line in resumed {
            let (a, b) = try #require(closedRange(line), "\(line)")
            #expect(logField(line, "status") == "206" && logField(line, "if_range") == part.etag, "\(line)")
            // Each asks for the rest of one segment, from what the progress file recorded.
            let seg = try #require(segments.first { $0.start <= a && a < $0.end }, "\(line)")
            #expect(b == seg.end - 1 || b == Int64(data.count - 1), "\(line) \(seg)")
            #expect(a >= seg.synced && a == (written[seg.start] ?? seg.synced), "\(line): segment \(seg), written \(written)")
        }
        #expect(inst.daemonLog.contains("segments to fetch"))
    }

    /// A gzip artifact in segments: the decompressor follows the contiguous
    /// prefix, and after a kill catches up over what is on disk.
    @Test func aCompressedArtifactInSegmentsIsDecompressedAcrossAKill() throws {
        let (inst, nginx) = try setUp()
        var text: [UInt8] = []
        var i = 0
        while text.count < 8 << 20 { text += Array("row \(i),\(i &* 2654435761 % 1000003),segment\n".utf8); i += 1 }
        let gz = try DownloadEndToEndTests.gzip(text + pseudoRandomBytes(10 << 20, seed: 34))
        #expect(gz.count > 12 << 20)
        try FileIO.writeAtomically(nginx.www + "/slow/rows.csv.gz", gz)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-gz", "/slower/rows.csv.gz")
        #expect(try waitForSegments(inst, "ext-seg-gz") != nil)
        inst.killDaemon()
        // A part a killed daemon had renamed away but not yet unlinked: the next start removes it.
        let leftover = inst.output + "/.incoming/.discard-4242-7"
        try FileIO.writeAtomically(leftover, [1, 2, 3])
        let incoming = try Inotify()
        _ = try incoming.watch(inst.output + "/.incoming", mask: UInt32(IN_MOVED_TO))
        try inst.startDaemon()
        #expect(try inst.waitForResult("ext-seg-gz", timeout: 90), "log:\n\(inst.daemonLog)")
        #expect(sha256sum("\(inst.output)/dataset/ext-seg-gz/rows.csv") == sha256Hex(text + pseudoRandomBytes(10 << 20, seed: 34)))
        #expect(!FileIO.exists(leftover) && inst.daemonLog.contains("removed 1 discarded part(s)"))
        // The part was renamed out of the staging directory, then unlinked on a thread of its own.
        #expect(try FileIO.list("\(inst.output)/dataset/ext-seg-gz").sorted() == ["job.json", "rows.csv"])
        #expect(try incoming.read().contains { $0.name.hasPrefix(".discard-") }, "the part went through the discarder")
        let noneLeft = { ((try? FileIO.list(inst.output + "/.incoming")) ?? []).allSatisfy { !$0.hasPrefix(".discard-") } }
        #expect(try Inotify.wait(until: noneLeft, in: inst.output + "/.incoming", mask: UInt32(IN_DELETE), timeout: 30))
    }

    /// A kill after the last byte arrived, at each point from there to the
    /// store's record of the publication: the decompressor draining, the
    /// artifact named in staging before the job's state says so (a gzip's
    /// output, a zip's members, the part itself), that state committed, the
    /// directory renamed into place. The restart fetches nothing again (at
    /// most one range past the end, answered 416) and publishes the result
    /// once, with no part and nothing stale left anywhere.
    /// At `publishing` with a plain artifact, its name is also taken away
    /// before the restart, as a power cut could take a link not yet durable:
    /// the job goes back to fetching and resumes from the part, still there.
    /// The gzip and plain artifacts are named by `Content-Disposition`, which
    /// the restart's 416 does not carry: the name the first answer gave is
    /// the one published.
    @Test(arguments: [("decoding", "gz"), ("named", "gz"), ("named", "zip"), ("named", "bin"),
                      ("publishing", "gz"), ("publishing", "bin"), ("published", "gz")])
    func aKillAfterTheLastByteFetchesNothingAgain(at point: String, artifact: String) throws {
        let (inst, nginx) = try setUp()
        let id = "ext-\(point)-\(artifact)"
        var text: [UInt8] = []
        var i = 0
        while text.count < 6 << 20 { text += Array("row \(i),\(i &* 2654435761 % 1000003),\(point)\n".utf8); i += 1 }
        let content = text + pseudoRandomBytes(6 << 20, seed: 37)
        let file = "\(id).\(artifact == "gz" ? "csv.gz" : artifact)"
        let served = nginx.www + "/slow/" + file
        // /named/ serves /slow/'s files with `Content-Disposition: attachment; filename="cd-<file>"` on a 200 only.
        let path = (artifact == "zip" ? "/slow/" : "/named/") + file
        // What is published, by name, and what it must hold.
        var expected: [String: [UInt8]]
        switch artifact {
        case "gz":
            try FileIO.writeAtomically(served, try DownloadEndToEndTests.gzip(content))
            expected = ["cd-\(id).csv": content]
        case "zip":
            try FileIO.writeAtomically(inst.root + "/rows.csv", content)
            try FileIO.writeAtomically(inst.root + "/b.txt", Array("hello".utf8))
            #expect(shell("python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], \"w\"); z.write(sys.argv[2], \"rows.csv\"); " +
                          "z.write(sys.argv[3], \"b.txt\"); z.close()' \(served) \(inst.root)/rows.csv \(inst.root)/b.txt") == 0)
            expected = ["rows.csv": content, "b.txt": Array("hello".utf8)]
        default:
            try FileIO.writeAtomically(served, content)
            expected = ["cd-\(id).bin": content]
        }
        try inst.startDaemon(environment: ["JOBFETCH_FAULT_STOP": "\(point) dataset/\(id)"])
        try add(inst, nginx, id, path)
        let stopped = inst.daemon?.waitStopped(timeout: 60) == true
        #expect(stopped, "the daemon never reached \(point); log:\n\(inst.daemonLog)")
        guard stopped else { inst.daemon = nil; return }  // it ended (reaped) or was killed
        inst.killDaemon()
        let killed = Date().timeIntervalSince1970
        #expect(lines(nginx, path).count >= 2, "it was split")
        if point == "publishing" && artifact == "bin" {
            #expect(unlink(inst.output + "/.incoming/dataset/\(id)/cd-\(file)") == 0)
        }
        try inst.startDaemon()
        #expect(try inst.waitForResult(id), "log:\n\(inst.daemonLog)")
        let again = lines(nginx, path).filter { Nginx.began($0) > killed }
        #expect(again.count <= 1 && again.allSatisfy { logField($0, "status") == "416" },
                "fetched again after a kill at \(point): \(again)")
        let dir = "\(inst.output)/dataset/\(id)"
        #expect(try FileIO.list(dir).sorted() == (Array(expected.keys) + ["job.json"]).sorted())
        let job = try inst.jobJSON(id)
        #expect(job["outcome"] == "succeeded", "\(String(describing: job["reason"]))")
        guard case .array(let files)? = job["files"] else { Issue.record("job.json files: \(String(describing: job["files"]))"); return }
        #expect(files.count == expected.count)
        for f in files {
            let name = f["name"]?.scalarText ?? ""
            let want = try #require(expected[name], "published \(name)")
            #expect(f["sha256"]?.scalarText == sha256Hex(want) && sha256sum(dir + "/" + name) == sha256Hex(want), "\(name)")
        }
        #expect(!FileIO.exists(inst.output + "/.incoming/dataset/\(id)"), "nothing left in staging")
        if point == "published" { #expect(inst.daemonLog.contains("(recovered)")) }
    }

    /// The file is replaced while segments are in flight, and the connections
    /// drop: the resumed ranges carry the old ETag, nginx answers with the new
    /// file whole, and that answer alone makes the result: nothing spliced.
    @Test func aFileReplacedWithSegmentsInFlightIsNeverSpliced() throws {
        let (inst, nginx) = try setUp()
        let old = pseudoRandomBytes(16 << 20, seed: 35)
        let new = pseudoRandomBytes(3 << 20, seed: 36)
        try FileIO.writeAtomically(nginx.www + "/slow/moving.bin", old)
        try inst.startDaemon()
        try addExternal(inst, nginx, "ext-seg-moving", "/slower/moving.bin")
        let part = try #require(try waitForSegments(inst, "ext-seg-moving"))
        // The server goes first, then the file is replaced: a piece asked for in
        // between would be answered whole by the old server and never logged.
        nginx.kill()
        try FileIO.writeAtomically(nginx.www + "/slow/moving.bin", new)
        try nginx.restart()
        #expect(try inst.waitForResult("ext-seg-moving", timeout: 90), "log:\n\(inst.daemonLog)")
        #expect(try FileIO.readAll("\(inst.output)/dataset/ext-seg-moving/moving.bin", limit: 64 << 20) == new)
        let after = lines(nginx, "/slower/moving.bin").filter { logField($0, "if_range") == part.etag }
        #expect(after.contains { logField($0, "status") == "200" && logField($0, "sent") == String(new.count) }, "\(lines(nginx, "/slower/moving.bin"))")
        // The whole answer was the download: no further attempt was needed.
        #expect(!inst.daemonLog.contains("segments not whole"), "\(inst.daemonLog)")
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    let path = NSTemporaryDirectory() + "/jobfetch-sha-\(getpid())-\(bytes.count)"
    defer { FileIO.unlinkIfPresent(path) }
    try? FileIO.writeAtomically(path, bytes)
    return sha256sum(path)
}
