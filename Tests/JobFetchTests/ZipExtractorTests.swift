import Testing
@testable import JobFetchArtifacts

@Suite struct ZipExtractorTests {
    func safe(_ p: String) -> String? { try? ZipExtractor.safePath(p, reserved: ["status.json"]).get() }

    @Test func entryPathsThatCouldLeaveTheDirectoryAreRefused() {
        #expect(safe("data/a.csv") == "data/a.csv")
        #expect(safe("dir/") == "dir")
        #expect(safe("job.json") == "artifact-job.json")
        #expect(safe("status.json") == "artifact-status.json")
        #expect(safe(".hidden") == "artifact-.hidden")
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\\\..\\\\b", "", "a/\u{1}b", "a/./b"] {
            #expect(safe(bad) == nil, "\(bad)")
        }
    }

    @Test func zipIsRecognisedByItsSignature() {
        #expect(ZipExtractor.isZip([0x50, 0x4B, 3, 4, 0]))
        #expect(ZipExtractor.isZip([0x50, 0x4B, 5, 6]))
        #expect(!ZipExtractor.isZip([0x50, 0x4B, 7, 8]))
        #expect(!ZipExtractor.isZip([0x1F, 0x8B, 8, 0]))
    }
}
