import Testing
@testable import JobFetchCore

@Suite struct JobIDTests {
    @Test(arguments: ["abc123", "A.b_c:d-e", "0", "ds_8f2c1a", String(repeating: "x", count: 200)])
    func accepts(_ id: String) throws {
        #expect(try JobID(id).rawValue == id)
    }

    @Test(arguments: [
        ("../x", "starts with '.'"),
        ("", "empty"),
        (String(repeating: "x", count: 201), "201 characters"),
        ("a\u{0}b", "NUL"),
        ("a/b", "'/'"),
        ("a b", "space"),
        (".hidden", "starts with '.'"),
        ("x%2e", "'%'"),
        ("caf\u{e9}", "byte 0xc3"),
    ])
    func rejects(_ id: String, _ expected: String) {
        let problem = JobID.problem(with: id)
        #expect(problem != nil)
        #expect(problem?.contains(expected) == true, "\(problem ?? "nil") should mention \(expected)")
        #expect(throws: JobFetchError.self) { try JobID(id) }
    }

    @Test func kindNamesAreDirectorySafe() {
        #expect(KindName.problem(with: "dataset") == nil)
        #expect(KindName.problem(with: "bulk-job_2") == nil)
        #expect(KindName.problem(with: "..") != nil)
        #expect(KindName.problem(with: "a/b") != nil)
        #expect(KindName.problem(with: "a:b") != nil)
    }
}
