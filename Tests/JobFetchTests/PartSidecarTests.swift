import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore

@Suite struct PartSidecarTests {
    @Test func resumableOnlyWithAValidatorAndNoEncoding() {
        var s = PartSidecar(url: "https://h/x", etag: "\"abc\"", lastModified: nil, length: 10, synced: 5, encoding: nil)
        #expect(s.isResumable && s.validator == "\"abc\"")
        s.etag = "W/\"weak\""
        #expect(!s.isResumable, "a weak ETag cannot be used in If-Range")
        s.lastModified = "Sun, 22 Nov 2026 10:00:00 GMT"
        #expect(s.validator == "Sun, 22 Nov 2026 10:00:00 GMT")
        s.encoding = "gzip"
        #expect(!s.isResumable, "a body that had a Content-Encoding is never resumed")
        s.encoding = nil
        s.synced = 0
        #expect(!s.isResumable)
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
