import Glibc
import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore

@Suite struct PartSidecarTests {
    @Test func resumableOnlyWithAValidatorAndNoEncoding() {
        var s = PartSidecar(url: "https://h/x", etag: "\"abc\"", lastModified: nil, length: 10, synced: 5, encoding: nil, boot: "b1")
        #expect(s.resume(partSize: 8, boot: "b2")?.offset == 5 && s.validator == "\"abc\"")
        s.etag = "W/\"weak\""
        #expect(s.resume(partSize: 8, boot: "b1") == nil, "a weak ETag cannot be used in If-Range")
        s.lastModified = "Sun, 22 Nov 2026 10:00:00 GMT"
        #expect(s.validator == "Sun, 22 Nov 2026 10:00:00 GMT")
        s.encoding = "gzip"
        #expect(s.resume(partSize: 8, boot: "b1") == nil, "a body that had a Content-Encoding is never resumed")
        s.encoding = nil
        #expect(s.resume(partSize: 0, boot: "b1") == nil, "nothing to keep")
        s.synced = 0
        #expect(s.resume(partSize: 8, boot: "b2") == nil, "after a reboot nothing is known to be on disk")
    }

    /// SPEC "Resume cost": on the boot that wrote the part, every byte in it
    /// counts (the page cache has what the daemon wrote before it died);
    /// after a reboot, only what a checkpoint flushed; never past the file.
    @Test func theSameBootResumesFromThePartsEndAnotherFromTheCheckpoint() throws {
        let s = PartSidecar(url: "https://h/x", etag: "\"e\"", lastModified: nil, length: 100, synced: 40, encoding: nil, boot: "b1")
        #expect(s.resume(partSize: 70, boot: "b1") == PartSidecar.Resume(sidecar: s, offset: 70))
        #expect(s.resume(partSize: 70, boot: "b2") == PartSidecar.Resume(sidecar: s, offset: 40))
        #expect(s.resume(partSize: 70, boot: nil)?.offset == 40, "an unknown boot is not the same boot")
        var unknown = s
        unknown.boot = nil
        #expect(unknown.resume(partSize: 70, boot: nil)?.offset == 40)
        // The file is shorter than the checkpoint said (it was cut): what is there.
        let cut = try #require(s.resume(partSize: 30, boot: "b2"))
        #expect(cut.offset == 30 && cut.sidecar.synced == 30)
        // A fresh sidecar (synced 0) killed before its first checkpoint: on the same boot, what was written.
        let fresh = PartSidecar(url: "https://h/x", etag: "\"e\"", lastModified: nil, length: 100, synced: 0, encoding: nil, boot: "b1")
        #expect(fresh.resume(partSize: 12, boot: "b1")?.offset == 12)
        #expect(fresh.resume(partSize: 12, boot: "b2") == nil)
        // The boot is kept in the sidecar's file, and a new sidecar records this boot.
        #expect(PartSidecar(json: s.json) == s)
        // So are the headers that name the artifact (a resumed answer may not repeat them).
        var named = s
        named.disposition = "attachment; filename=\"r\u{e9}sum\u{e9}.csv\""
        named.contentType = "text/csv"
        #expect(PartSidecar(json: named.json) == named)
        #expect(named.namingHeaders == ["content-disposition": named.disposition!, "content-type": "text/csv"])
        #expect(s.namingHeaders.isEmpty)
        #expect(PartSidecar(url: "u", etag: nil, lastModified: nil, length: nil, synced: 0, encoding: nil).boot == PartSidecar.currentBoot)
        if FileIO.exists("/proc/sys/kernel/random/boot_id") {
            #expect(PartSidecar.currentBoot?.count == 36, "boot_id is a UUID: \(PartSidecar.currentBoot ?? "nil")")
        }
    }

    /// A writer that ended with an error (a failed write or flush) leaves a
    /// sidecar without a boot: the next resume, even on this boot, starts
    /// from the last flush that succeeded, not from the file's length.
    @Test func aWriterThatFailedDistrustsWhatItWrote() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let url = try ParsedURL("https://files.example/x.bin")
        func written(failing: Bool) throws -> PartSidecar.Resume? {
            let part = dir + "/\(failing).part"
            let w = Part(path: part, limit: 1 << 20, resume: nil, observer: nil).firstWriter()
            #expect(w.begin(status: 200, headers: ["etag": "\"e\"", "content-length": "4096"], url: url))
            let bytes = [UInt8](repeating: 7, count: 1000)
            #expect(bytes.withUnsafeBytes { w.write($0) })
            if failing { w.error = SystemError("fdatasync", part, errno: EIO) }
            w.finish(durably: false)
            return PartSidecar.load(part: part)?.resume(partSize: FileIO.size(part) ?? 0, boot: PartSidecar.currentBoot)
        }
        #expect(try written(failing: false)?.offset == 1000, "the same boot keeps what was written")
        #expect(try written(failing: true) == nil, "nothing was flushed: a fresh start")
    }

    @Test func sidecarRoundTripsThroughItsFile() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let s = PartSidecar(url: "https://h/x", etag: "\"e\"", lastModified: "lm", length: 42, synced: 7, encoding: nil)
        try s.save(part: dir + "/a.part")
        #expect(PartSidecar.load(part: dir + "/a.part") == s)
        try write(dir + "/b.part.json", "{not json")
        #expect(PartSidecar.load(part: dir + "/b.part") == nil)
    }

    @Test func contentRange() {
        #expect(ContentRange.parse("bytes 100-199/1000") == ContentRange(start: 100, end: 199, total: 1000))
        #expect(ContentRange.parse("bytes 0-9/*") == ContentRange(start: 0, end: 9, total: nil))
        #expect(ContentRange.parse("bytes */1000") == ContentRange(start: nil, end: nil, total: 1000))
        #expect(ContentRange.parse("bytes 5-4/10") == nil)
        #expect(ContentRange.parse("items 0-1/2") == nil)
        #expect(ContentRange.parse(nil) == nil)
    }

    @Test func presignedExpiries() {
        #expect(PresignedURL.expiry("https://b.s3/x?X-Amz-Date=20261122T100000Z&X-Amz-Expires=900&X-Amz-Signature=s") == 1_795_342_500.0)
        #expect(PresignedURL.expiry("https://g/x?X-Goog-Date=20261122T100000Z&X-Goog-Expires=60") == 1_795_341_660)
        #expect(PresignedURL.expiry("https://cf/x?Expires=1795341600&Signature=s") == 1_795_341_600)
        #expect(PresignedURL.expiry("https://a.blob/x?sv=2024&se=2026-11-22T10%3A00%3A00Z&sig=s") == 1_795_341_600)
        #expect(PresignedURL.expiry("https://h/x?page=2") == nil)
        #expect(PresignedURL.expiry("https://h/x") == nil)
    }
}
