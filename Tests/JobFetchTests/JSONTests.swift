import Testing
@testable import JobFetchCore

@Suite struct JSONTests {
    @Test func roundTripKeepsOrderAndNumberLiterals() throws {
        let text = #"{"z":1,"a":[1.50,-0,2e10,true,false,null],"m":{"k":"v\n\"q\"\u00e9\ud83d\ude00"}}"#
        let v = try JSONParser.parse(text)
        #expect(JSONWriter.string(v) == #"{"z":1,"a":[1.50,-0,2e10,true,false,null],"m":{"k":"v\n\"q\"é😀"}}"#)
        #expect(v.value(at: try JSONPointer("/a/0")) == .number("1.50"))
        #expect(v.value(at: try JSONPointer("/m/k"))?.scalarText == "v\n\"q\"é😀")
        #expect(v.value(at: try JSONPointer("/a/9")) == nil)
        #expect(v.value(at: try JSONPointer("/a/01")) == nil)
    }

    @Test(arguments: [
        ("{\"a\":}", 5), ("[1,]", 3), ("{\"a\" 1}", 5), ("\"abc", 4), ("01", 1), ("[1] x", 4), ("\"\\ud800\"", 7), ("", 0),
    ])
    func syntaxErrorsNameTheOffset(_ text: String, _ offset: Int) {
        #expect(throws: JSONParser.SyntaxError.self) { try JSONParser.parse(text) }
        do { _ = try JSONParser.parse(text) } catch { #expect(error.offset == offset, "\(error)") }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParser.SyntaxError.self) { try JSONParser.parse(deep) }
    }

    @Test func pointerEscapes() throws {
        let v = try JSONParser.parse(#"{"a/b":{"c~d":7}}"#)
        #expect(v.value(at: try JSONPointer("/a~1b/c~0d")) == .number("7"))
        #expect(throws: JobFetchError.self) { try JSONPointer("no-slash") }
    }

    @Test func signaturesInDocumentURLsAreRedacted() throws {
        let doc = try JSONParser.parse(#"{"url":"https://b.s3.example/r.gz?X-Amz-Credential=AKIA%2F1&X-Amz-Expires=900&X-Amz-Signature=abc","csv_url":"/v0/x/csv?format=csv&token=t0k","sas":"https://a.blob.example/c/f?sv=2024&sig=zz#frag","who":"https://user:pw@h/p?q=1","n":5,"note":"a ?sig=x not a URL"}"#)
        let r = SignatureRedactor.redact(doc)
        #expect(r["url"] == "https://b.s3.example/r.gz?X-Amz-Credential=REDACTED&X-Amz-Expires=900&X-Amz-Signature=REDACTED")
        #expect(r["csv_url"] == "/v0/x/csv?format=csv&token=REDACTED")
        #expect(r["sas"] == "https://a.blob.example/c/f?sv=2024&sig=REDACTED#frag")
        #expect(r["who"] == "https://h/p?q=1")
        #expect(r["n"] == 5)
        #expect(r["note"] == "a ?sig=x not a URL")
    }
}
