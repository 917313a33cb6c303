import Glibc
import Testing
@testable import JobFetchCore

@Suite struct SpoolFileTests {
    /// Spool directories stay writable by their group whatever the umask,
    /// and take a setgid parent's group and bit without asking for it.
    @Test func spoolDirectoriesAreGroupWritableAndInheritSetgid() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let old = umask(0o027)
        defer { umask(old) }
        try FileIO.makeSharedDirectories(dir + "/spool/kind")
        var st = stat()
        #expect(stat(dir + "/spool/kind", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o770)
        #expect(chmod(dir + "/spool", 0o2770) == 0)
        try FileIO.makeSharedDirectories(dir + "/spool/.rejected")
        #expect(stat(dir + "/spool/.rejected", &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o2770, "mode \(String(st.st_mode & 0o7777, radix: 8))")
    }

    @Test func readsIDsSkippingBlanksAndComments() {
        let text = "# nightly batch\nabc123\n\n  def456  \r\n#another\nabc123\nghi:789\n"
        let c = SpoolFile.parse(name: "batch", bytes: Array(text.utf8))
        #expect(c.ids.map(\.rawValue) == ["abc123", "def456", "ghi:789"])
        #expect(c.problems.isEmpty)
    }

    @Test func emptyFileNameIsTheID() {
        let c = SpoolFile.parse(name: "abc123", bytes: [])
        #expect(c.ids.map(\.rawValue) == ["abc123"])
        #expect(c.problems.isEmpty)
    }

    @Test func emptyFileWithABadNameIsAProblem() {
        let c = SpoolFile.parse(name: "bad name", bytes: [])
        #expect(c.ids.isEmpty)
        #expect(c.problems.count == 1)
        #expect(c.problems[0].message.contains("space"))
    }

    @Test func badLinesAreReportedWithTheirNumbersAndGoodOnesKept() {
        let bytes = Array("good1\n../etc/passwd\ngood2\n\(String(repeating: "y", count: 300))\n".utf8) + [0xFF, 0xFE, 0x0A]
        let c = SpoolFile.parse(name: "f", bytes: bytes)
        #expect(c.ids.map(\.rawValue) == ["good1", "good2"])
        #expect(c.problems.map(\.line) == [2, 4, 5])
        #expect(c.problems[2].message.contains("UTF-8"))
    }

    @Test func onlyCommentsIsAProblem() {
        let c = SpoolFile.parse(name: "f", bytes: Array("# nothing\n\n".utf8))
        #expect(c.ids.isEmpty)
        #expect(c.problems.count == 1)
    }

    @Test func renderRoundTrips() throws {
        let ids = [try JobID("a"), try JobID("b.c")]
        #expect(SpoolFile.parse(name: "x", bytes: SpoolFile.render(ids)).ids == ids)
    }
}
