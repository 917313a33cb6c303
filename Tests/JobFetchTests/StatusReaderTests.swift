import Testing
@testable import JobFetchCore

@Suite struct StatusReaderTests {
    func read(_ name: String) throws -> StatusReading {
        StatusReader.read(try fixture("dataset/" + name), mapping: Preset.dataset)
    }

    @Test func processingRecordsProgress() throws {
        let r = try read("processing.json")
        #expect(r.observation == .running(progress: 0.42, paused: false))
        #expect(r.apiStatus == "processing")
    }

    @Test func completedGivesTheRelativeCSVURL() throws {
        let r = try read("completed-relative.json")
        #expect(r.observation == .succeeded(resultURL: "/v0/datasets/ds_8f2c1a/csv?format=csv&token=abc123signature", inline: nil, warnings: []))
        let base = try ParsedURL("https://api.qoery.com/v0/datasets/ds_8f2c1a")
        let resolved = try ParsedURL("/v0/datasets/ds_8f2c1a/csv?format=csv&token=abc123signature", relativeTo: base)
        #expect(resolved.origin == base.origin)
        #expect(resolved.redacted == "https://api.qoery.com/v0/datasets/ds_8f2c1a/csv")
    }

    @Test func statusMatchesCaseInsensitively() throws {
        let r = try read("completed-absolute.json")
        guard case .succeeded(let url?, nil, []) = r.observation else { Issue.record("not succeeded: \(r.observation)"); return }
        let u = try ParsedURL(url)
        #expect(u.host == "files.qoery.example")
        #expect(!u.redacted.contains("Signature"))
    }

    @Test func errorGivesTheReason() throws {
        #expect(try read("error.json").observation == .failed(reason: "collection failed: quota exceeded for source 'web'"))
        guard case .failed(let reason) = try read("error-no-reason.json").observation else { Issue.record("not failed"); return }
        #expect(reason.contains("\"error\""))
    }

    @Test func unknownStatusKeepsPolling() throws {
        #expect(try read("unknown-status.json").observation == .unknown(status: "throttled"))
    }

    @Test func missingStatusAndNonJSONAreMalformed() throws {
        guard case .malformed(let a) = try read("missing-status.json").observation else { Issue.record("expected malformed"); return }
        #expect(a.contains("/status"))
        guard case .malformed(let b) = try read("not-json.html").observation else { Issue.record("expected malformed"); return }
        #expect(b.contains("not JSON"))
        guard case .malformed = StatusReader.read(Array("[1,2]".utf8), mapping: Preset.dataset).observation else {
            Issue.record("an array is not a status document"); return
        }
    }

    @Test func customMappingWithUnwrapAndErrorFallbacks() throws {
        var m = StatusMapping()
        m.unwrap = try JSONPointer("/job")
        m.statusField = try JSONPointer("/state")
        m.running = ["processing"]
        m.success = ["success"]
        m.failure = ["failure", "error"]
        m.errorFields = [try JSONPointer("/response/error"), try JSONPointer("/response/detail")]
        m.resultURLField = try JSONPointer("/response/url")
        let failed = StatusReader.read(Array(#"{"job":{"state":"FAILURE","response":{"error":null,"detail":"bad input"}}}"#.utf8), mapping: m)
        #expect(failed.observation == .failed(reason: "bad input"))
        let ok = StatusReader.read(Array(#"{"job":{"state":"success","response":{"url":"https://x/y"}}}"#.utf8), mapping: m)
        #expect(ok.observation == .succeeded(resultURL: "https://x/y", inline: nil, warnings: []))
    }
}
