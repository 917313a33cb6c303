import Testing
@testable import JobFetchCore

/// Each preset against realistic status documents for every state
/// (Tests/Fixtures/<preset>/), as the APIs send them.
@Suite struct PresetTests {
    func read(_ preset: String, _ name: String) throws -> StatusReading {
        guard let m = Preset.mapping(named: preset) else { throw JobFetchError("no preset \(preset)") }
        return StatusReader.read(try fixture("\(preset)/\(name).json"), mapping: m)
    }

    func succeeded(_ r: StatusReading) -> (url: String?, inline: JSONValue?, warnings: [String])? {
        if case .succeeded(let u, let i, let w) = r.observation { return (u, i, w) }
        return nil
    }

    @Test func everyPresetIsComplete() throws {
        for name in Preset.names where name != "custom" {
            let m = try #require(Preset.mapping(named: name))
            #expect(m.missingKeys.isEmpty, "\(name)")
            // The classes do not overlap, and every value is already normalised.
            let all = m.running + m.success + m.failure + m.partial + m.paused
            #expect(Set(all).count == all.count, "\(name)")
            #expect(all.allSatisfy { $0 == StatusMapping.normalize($0) }, "\(name)")
        }
        #expect(Preset.mapping(named: "nope") == nil)
    }

    @Test func bulkJob() throws {
        #expect(try read("bulk-job", "queued").observation == .running(progress: 0, paused: false))
        #expect(try read("bulk-job", "in-progress-202").observation == .running(progress: 0.37, paused: false))
        let url = try #require(succeeded(try read("bulk-job", "success-url")))
        #expect(url.url?.hasPrefix("https://storage.example-cdn.net/bulk/bj_01HZX3K9Q2/results.jsonl.gz?") == true)
        #expect(url.warnings.isEmpty)
        let inline = try #require(succeeded(try read("bulk-job", "success-inline")))
        #expect(inline.url == nil)
        #expect(inline.inline?.scalarText?.hasPrefix(#"{"id":"gid://shop/Product/1""#) == true)
        #expect(inline.warnings == ["Field 'sku' doesn't exist on type 'Product' (at products.sku)"])
        let partial = try #require(succeeded(try read("bulk-job", "partial-success")))
        #expect(partial.warnings.first == "the API reported partial success (status PartialSuccess)")
        #expect(partial.warnings.count == 2)
        // On failure the GraphQL errors are the reason, all of them.
        #expect(try read("bulk-job", "failure").observation == .failed(reason: "Query cost 12000 exceeds the maximum of 10000; Timeout"))
        #expect(try read("bulk-job", "cancelled").observation == .failed(reason: "the API reported status \"Cancelled\" and gave no reason"))
        #expect(try read("bulk-job", "results-expired").observation == .failed(reason: "the API reported status \"ResultsExpired\" and gave no reason"))
        // Other spellings of the same states.
        #expect(succeeded(try read("bulk-job", "completed-uppercase"))?.url == "https://storage.example-cdn.net/x.jsonl?sig=abc")
        guard case .failed = try read("bulk-job", "failed-uppercase").observation else { Issue.record("FAILED is a failure"); return }
    }

    @Test func bulkProcess() throws {
        #expect(try read("bulk-process", "submitted").observation == .running(progress: nil, paused: false))
        #expect(try read("bulk-process", "running").observation == .running(progress: nil, paused: false))
        #expect(try read("bulk-process", "paused").observation == .running(progress: nil, paused: true))
        let done = try read("bulk-process", "completed")
        #expect(succeeded(done)?.warnings == [])
        #expect(done.summary == .object(["SUCCESS": 250]))
        // The whole document is published as status.json.
        #expect(done.published.map(\.name) == ["status.json"])
        #expect(done.published.first?.value["bulkId"] == "b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
        let partial = try read("bulk-process", "partially-completed")
        #expect(succeeded(partial)?.warnings == [#"the API reported partial success (status PARTIALLY_COMPLETED): operationStatusCounts {"SUCCESS":240,"FAILED":10}"#])
        #expect(try read("bulk-process", "failed").observation == .failed(reason: "the bulk process was aborted: catalog locked"))
        guard case .failed = try read("bulk-process", "cancelled").observation else { Issue.record("CANCELLED fails"); return }
        // Pages: the URL, the list, the total.
        let pages = try #require(Preset.bulkProcess.pages)
        #expect(pages.url(statusURL: "https://api.example.com/v3/bulks/b-1?tenant=7", id: try JobID("b-1"), offset: 200)
                == "https://api.example.com/v3/bulks/b-1/operations?offset=200&limit=100")
        let page = try JSONParser.parse(try fixture("bulk-process/operations-page.json"))
        guard case .array(let ops)? = page.value(at: pages.itemsField) else { Issue.record("no operations"); return }
        #expect(ops.count == 2)
        #expect(page.value(at: try #require(pages.totalField)) == .int(250))
    }

    @Test func bulkProcessErrorBodyNamesEveryInvalidField() throws {
        let response = HTTPResponse(status: 400, headers: [:], body: try fixture("bulk-process/error-400.json"), bytesWritten: 0,
                                    error: nil, writeError: nil, bodyTooLarge: false, seconds: 0)
        #expect(JobMachine.apiMessage(response) == "The bulk request is invalid; operations[3].price: must be a positive number; operations[7].sku: must not be empty")
    }

    @Test func export() throws {
        let pending = try read("export", "pending")
        #expect(pending.observation == .running(progress: nil, paused: false))
        #expect(pending.notBefore == Timestamp.parse("2026-11-22T09:15:00Z"))
        let inProgress = try read("export", "in-progress")
        #expect(inProgress.observation == .running(progress: 55, paused: false))
        #expect(inProgress.apiStatus == "In Progress")
        let ok = try read("export", "successful")
        #expect(succeeded(ok)?.warnings == ["results reports warnings 2"])
        #expect(succeeded(ok)?.url == nil, "a result URL only when the kind sets result_url_field")
        #expect(ok.summary == .object(["successful": 98, "warnings": 2, "errors": 0]))
        #expect(succeeded(try read("export", "completed-clean"))?.warnings == [])
        let failed = try read("export", "failed")
        #expect(failed.observation == .failed(reason: "export aborted: source space was archived (failed at 2026-11-22T10:01:07Z)"))
        #expect(failed.summary?["errors"] == .int(1))
    }

    @Test func jobSchemaWrappedOrNot() throws {
        #expect(try read("job", "processing-wrapped").observation == .running(progress: 0.3, paused: false))
        let ok = try read("job", "success-wrapped")
        #expect(succeeded(ok)?.url == "https://api.example.org/jobs/job_5521/download")
        #expect(ok.published == [PublishedDocument(name: "response.json", value: .object(["url": "https://api.example.org/jobs/job_5521/download", "rows": 3, "format": "jsonl"]))])
        let bare = try read("job", "success-unwrapped")
        #expect(succeeded(bare)?.url == nil)
        #expect(bare.published.map(\.name) == ["response.json"])
        #expect(try read("job", "failure-detail").observation == .failed(reason: "worker crashed: out of memory"))
        #expect(try read("job", "error-nested").observation == .failed(reason: "upstream timeout after 300s"))
        #expect(try read("job", "error-response-error").observation == .failed(reason: "invalid template id"))
    }

    @Test func statusValuesIgnoreCaseSpacesAndSeparators() {
        #expect(StatusMapping.normalize("In Progress") == "inprogress")
        #expect(StatusMapping.normalize("IN_PROGRESS") == "inprogress")
        #expect(StatusMapping.normalize("Partially-Completed") == "partiallycompleted")
    }

    @Test func timestampsAsAPIsWriteThem() {
        #expect(Timestamp.parse("2026-11-22T10:00:00Z") == 1_795_341_600)
        #expect(Timestamp.parse("2026-11-22 10:00:00") == 1_795_341_600)
        #expect(Timestamp.parse("2026-11-22T11:30:00+01:30") == 1_795_341_600)
        #expect(Timestamp.parse("2026-11-22T10:00:00.250Z") == 1_795_341_600.25)
        #expect(Timestamp.parse("2026-11-22T10:00:00") == 1_795_341_600)
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-22T10:00:00Zjunk", "2026-11-22T10:00:00+0100"] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
        #expect(Timestamp.parse(Timestamp.iso8601(1_795_341_600.5)) == 1_795_341_600.5)
        #expect(StatusReader.time(.number("1795341600")) == 1_795_341_600)
        #expect(StatusReader.time(.number("1795341600000")) == 1_795_341_600)
    }
}
