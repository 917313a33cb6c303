import Testing
@testable import JobFetch

@Suite struct SpoolFileTests {
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
