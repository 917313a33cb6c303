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

    /// Names the kernel cannot create (a component over NAME_MAX) or a path
    /// too long to list and remove below an output directory are refused as
    /// the archive's fault, not retried as a write error (found by the probe of 76296a5).
    @Test func entryNamesTooLongToCreateOrWalkAreRefused() {
        let long = String(repeating: "n", count: 246)
        #expect(safe("d/" + long) == "d/" + long)
        #expect(safe(long) == long, "room for the artifact- prefix")
        #expect(safe("d/" + long + "n") == nil, "a component of 247 bytes")
        let deep = Array(repeating: String(repeating: "x", count: 200), count: 5).joined(separator: "/")  // 1004 bytes
        #expect(safe(deep + "/f.txt") == deep + "/f.txt")
        #expect(safe(deep + "/" + String(repeating: "y", count: 30)) == nil, "a path over 1024 bytes")
        #expect(safe("d/" + String(repeating: "é", count: 124)) == nil, "bytes are counted, not characters")
    }

    @Test func zipIsRecognisedByItsSignature() {
        #expect(ZipExtractor.isZip([0x50, 0x4B, 3, 4, 0]))
        #expect(ZipExtractor.isZip([0x50, 0x4B, 5, 6]))
        #expect(!ZipExtractor.isZip([0x50, 0x4B, 7, 8]))
        #expect(!ZipExtractor.isZip([0x1F, 0x8B, 8, 0]))
    }
}
