import Foundation
import Glibc
import JobFetchCore
import Testing

/// Every preset through the real binaries against the fake APIs: one
/// success and one failure each, plus the quirks that break naive pollers.
@Suite(.serialized) struct PresetEndToEndTests {
    static let secretSignature = "sig-5ecret-do-not-log"

    static let sections = """
        [kind bulk]
        preset = bulk-job
        status_url = {API}/bulkjob/{id}/status
        header = x-api-key: ${file:{KEYFILE}}
        poll_interval = 200ms
        max_poll_interval = 1s

        [kind bulks]
        preset = bulk-process
        status_url = {API}/v3/bulks/{id}
        header = api-key: ${file:{KEYFILE}}
        header = Authorization: Bearer ${file:{KEYFILE}}-bearer
        poll_interval = 200ms
        max_poll_interval = 1s

        [kind export]
        preset = export
        status_url = {API}/export/{id}/status
        header = x-api-key: ${file:{KEYFILE}}
        poll_interval = 200ms
        max_poll_interval = 1s

        [kind exportfile]
        preset = export
        status_url = {API}/export/{id}/status
        header = x-api-key: ${file:{KEYFILE}}
        result_url_field = /download_url
        poll_interval = 200ms
        max_poll_interval = 1s

        [kind task]
        preset = job
        status_url = {API}/jobs/{id}
        header = x-api-key: ${file:{KEYFILE}}
        poll_interval = 200ms
        max_poll_interval = 1s

        # A sixth API, defined by its mapping alone.
        [kind render]
        preset = custom
        status_url = {API}/api/v2/tasks/{id}
        header = x-api-key: ${file:{KEYFILE}}
        unwrap = /data/task
        status_field = /state
        running = WORKING, QUEUED
        success = DONE
        failure = BROKEN
        result_url_field = /output/href
        error_field = /problem/text
        warnings_field = /notes
        progress_field = /percent
        poll_interval = 200ms
        max_poll_interval = 1s
        """

    func start() throws -> Installation {
        let inst = try Installation(sections: Self.sections)
        try inst.startDaemon()
        return inst
    }

    func files(_ job: JSONValue) -> [String] {
        guard case .array(let items)? = job["files"] else { return [] }
        return items.compactMap { $0["name"]?.scalarText }
    }

    func warnings(_ job: JSONValue) -> [String] {
        guard case .array(let items)? = job["warnings"] else { return [] }
        return items.compactMap(\.scalarText)
    }

    @Test func bulkJob202ThenPresignedURLOnAnotherOriginGetsNoCredentials() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "bulk", "done-2-gql"]).status == 0)
        #expect(try inst.waitForResult("done-2-gql", kind: "bulk"), "log:\n\(inst.daemonLog)")
        // 202 while running (same body), then 200 when done.
        #expect(inst.api.allLines.filter { $0 == "STATUS done-2-gql 202 InProgress" }.count == 2)
        #expect(inst.api.allLines.contains("STATUS done-2-gql 200 Success"))
        let job = try inst.jobJSON("done-2-gql", kind: "bulk")
        #expect(job["outcome"] == "succeeded")
        #expect(job["api_status"] == "Success")
        // The gzipped JSONL from the object store, decompressed, without credentials.
        #expect(inst.api.waitForLine(timeout: 5) { $0 == "FILE GET /files/done-2-gql.jsonl.gz cred=no" } != nil)
        #expect(!inst.api.allLines.contains { $0.hasPrefix("FILE GET") && $0.hasSuffix("cred=yes") })
        #expect(files(job) == ["done-2-gql.jsonl"])
        let lines = inst.file("bulk", "done-2-gql", "done-2-gql.jsonl").split(separator: "\n")
        #expect(lines.count == 40)
        #expect(lines.first == #"{"id": "gid://item/0", "job": "done-2-gql", "title": "item 0"}"#)
        // The signature never reaches job.json's files or the log.
        guard case .array(let list)? = job["files"] else { return }
        #expect(list[0]["source"] == .string("http://127.0.0.1:\(inst.filesPort)/files/done-2-gql.jsonl.gz"))
        #expect(!inst.daemonLog.contains(Self.secretSignature))
        #expect(!inst.daemonLog.contains(inst.apiKey))
        // job.json keeps the status document, with the URL's signature taken out.
        #expect(!JSONWriter.string(job).contains(Self.secretSignature))
        #expect(job["status"]?["url"]?.scalarText?.hasSuffix("/files/done-2-gql.jsonl.gz?X-Amz-Expires=3600&X-Amz-Signature=REDACTED") == true)
        let shown = try inst.ctl(["status", "bulk", "done-2-gql", "--json"])
        #expect(!shown.out.contains(Self.secretSignature))
    }

    @Test func bulkJobInlineResultWarningsAndFailures() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "bulk", "inline-a", "partial-b", "fail-c", "expired-d", "empty202-e"]).status == 0)
        for id in ["inline-a", "partial-b", "fail-c", "expired-d", "empty202-e"] { #expect(try inst.waitForResult(id, kind: "bulk"), "\(id)") }

        let inline = try inst.jobJSON("inline-a", kind: "bulk")
        #expect(inline["outcome"] == "succeeded")
        #expect(files(inline) == ["result"])
        #expect(inline["status"]?["raw_result"]?.scalarText == inst.file("bulk", "inline-a", "result"))
        #expect(inst.file("bulk", "inline-a", "result").split(separator: "\n").count == 3)
        let gql = "Field 'sku' doesn't exist on type 'Product' (at products.sku)"
        #expect(warnings(inline) == [gql])
        #expect(inst.daemonLog.contains("bulk/inline-a: API warning: \(gql)"))

        let partial = try inst.jobJSON("partial-b", kind: "bulk")
        #expect(partial["outcome"] == "succeeded")
        #expect(warnings(partial) == ["the API reported partial success (status PartialSuccess)", gql])

        let failed = try inst.jobJSON("fail-c", kind: "bulk")
        #expect(failed["outcome"] == "failed")
        #expect(failed["reason"] == "Query cost 12000 exceeds the maximum of 10000")
        // A 202 with no body at all is "still running", not a bad document.
        #expect(inst.api.allLines.filter { $0 == "STATUS empty202-e 202 (empty)" }.count == 2)
        #expect(try inst.jobJSON("empty202-e", kind: "bulk")["outcome"] == "succeeded")
        #expect(!inst.daemonLog.contains("bulk/empty202-e: bad status document"))
        let expired = try inst.jobJSON("expired-d", kind: "bulk")
        #expect(expired["outcome"] == "failed")
        #expect(expired["reason"] == "the API reported status \"ResultsExpired\" and gave no reason")
    }

    @Test func bulkProcessPagesOperationsWithTwoCredentials() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "bulks", "done-a", "paused-b", "partial-c", "fail-d", "bad-e"]).status == 0)
        for id in ["done-a", "paused-b", "partial-c", "fail-d", "bad-e"] { #expect(try inst.waitForResult(id, kind: "bulks"), "\(id)") }
        // Both credentials arrived at every request.
        #expect(!inst.api.allLines.contains { $0.hasPrefix("REQ GET /v3/") && $0.hasSuffix("key=no") })

        let done = try inst.jobJSON("done-a", kind: "bulks")
        #expect(done["outcome"] == "succeeded")
        #expect(files(done) == ["operations.jsonl", "status.json"])
        #expect(inst.api.allLines.filter { $0.hasPrefix("PAGE done-a ") } == ["PAGE done-a 0 100", "PAGE done-a 100 100", "PAGE done-a 200 100"])
        let ops = inst.file("bulks", "done-a", "operations.jsonl").split(separator: "\n").map(String.init)
        #expect(ops.count == 250)
        #expect(Set(ops).count == 250)
        #expect(try JSONParser.parse(ops[249])["operationId"] == "done-a-op-249")
        #expect(try JSONParser.parse(inst.file("bulks", "done-a", "status.json"))["status"] == "COMPLETED")
        #expect(done["summary"]?["operationStatusCounts"]?["SUCCESS"] == .int(250))

        #expect(try inst.jobJSON("paused-b", kind: "bulks")["outcome"] == "succeeded")
        #expect(inst.daemonLog.components(separatedBy: "bulks/paused-b: paused by the API (status PAUSED); still polling").count - 1 == 1)

        let partial = try inst.jobJSON("partial-c", kind: "bulks")
        #expect(partial["outcome"] == "succeeded")
        #expect(warnings(partial) == [#"the API reported partial success (status PARTIALLY_COMPLETED): operationStatusCounts {"SUCCESS":240,"FAILED":10}"#])

        let failed = try inst.jobJSON("fail-d", kind: "bulks")
        #expect(failed["reason"] == "the bulk process was aborted: catalog locked")
        #expect(files(failed).isEmpty)
        let bad = try inst.jobJSON("bad-e", kind: "bulks")
        #expect(bad["outcome"] == "failed")
        #expect(bad["reason"] == "the API refused the request to the status endpoint (HTTP 400): The bulk request is invalid; operations[3].price: must be a positive number; operations[7].sku: must not be empty")
    }

    @Test func exportWaitsForEstimatedCompletionAndPublishesResults() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "export", "done-a", "fail-b"]).status == 0)
        #expect(try inst.ctl(["add", "exportfile", "done-c"]).status == 0)
        for (kind, id) in [("export", "done-a"), ("export", "fail-b"), ("exportfile", "done-c")] {
            #expect(try inst.waitForResult(id, kind: kind), "\(kind)/\(id)")
        }
        // The first answer promised completion 1.5 s ahead: the next poll was not sooner
        // (poll_interval alone would have polled again after 200 ms).
        let polls = inst.api.allLines.filter { $0.hasPrefix("STATUS done-a ") }
        #expect(polls.count == 3)
        func field(_ line: String, _ name: String) -> String? {
            line.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        if polls.count >= 2, let eta = field(polls[0], "eta").flatMap(Timestamp.parse), let second = field(polls[1], "at").flatMap(Double.init) {
            #expect(second >= eta - 0.05, "second poll at \(second), estimated completion \(eta)")
        } else {
            Issue.record("poll log: \(polls)")
        }
        let done = try inst.jobJSON("done-a", kind: "export")
        #expect(done["outcome"] == "succeeded")
        #expect(done["summary"]?["results"] == .object(["successful": 98, "warnings": 2, "errors": 0]))
        #expect(try inst.ctl(["status", "export", "done-a"]).out.contains(#"summary:     {"results":{"successful":98,"warnings":2,"errors":0}}"#))
        #expect(warnings(done) == ["results reports warnings 2"])
        // No result_url_field in this kind: nothing downloaded.
        #expect(files(done).isEmpty)
        #expect(!inst.api.allLines.contains("REQ GET /export/done-a/file key=yes"))
        #expect(files(try inst.jobJSON("done-c", kind: "exportfile")) == ["done-c-export.csv"])

        let failed = try inst.jobJSON("fail-b", kind: "export")
        #expect(failed["outcome"] == "failed")
        let reason = failed["reason"]?.scalarText ?? ""
        #expect(reason.hasPrefix("export aborted: source space was archived (failed at 20"), "\(reason)")
    }

    @Test func wrappedJobSchemaPublishesResponseAndDownloadsItsURL() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "task", "done-a", "fail-b", "nested-c"]).status == 0)
        for id in ["done-a", "fail-b", "nested-c"] { #expect(try inst.waitForResult(id, kind: "task"), "\(id)") }
        let done = try inst.jobJSON("done-a", kind: "task")
        #expect(done["outcome"] == "succeeded")
        #expect(files(done) == ["download.jsonl", "response.json"])
        #expect(try JSONParser.parse(inst.file("task", "done-a", "response.json")) == .object(["url": "/jobs/done-a/download", "rows": 3, "format": "jsonl"]))
        #expect(inst.file("task", "done-a", "download.jsonl").split(separator: "\n").count == 3)
        // Same origin as the status endpoint: the credentials went along.
        #expect(inst.api.allLines.contains("REQ GET /jobs/done-a/download key=yes"))
        #expect(try inst.jobJSON("fail-b", kind: "task")["reason"] == "worker crashed: out of memory")
        #expect(try inst.jobJSON("nested-c", kind: "task")["reason"] == "upstream timeout after 300s")
    }

    @Test func aSixthAPIDefinedOnlyInTheConfig() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "render", "done-a", "fail-b"]).status == 0)
        for id in ["done-a", "fail-b"] { #expect(try inst.waitForResult(id, kind: "render"), "\(id)") }
        let done = try inst.jobJSON("done-a", kind: "render")
        #expect(done["outcome"] == "succeeded")
        #expect(files(done) == ["done-a.csv"])
        #expect(warnings(done) == ["2 rows were truncated"])
        #expect(inst.file("render", "done-a", "done-a.csv").hasPrefix("id,name,score\n0,"))
        #expect(inst.api.allLines.contains("FILE GET /files/done-a.csv cred=no"))
        #expect(try inst.jobJSON("fail-b", kind: "render")["reason"] == "renderer ran out of disk")
    }

    @Test func datasetCSVNotReadyAndQuotaAreRetried() throws {
        let inst = try start()
        #expect(try inst.ctl(["add", "dataset", "nocsv-a", "quota-b"]).status == 0)
        for id in ["nocsv-a", "quota-b"] { #expect(try inst.waitForResult(id), "\(id)") }
        #expect(inst.api.allLines.filter { $0 == "CSV-404 nocsv-a" }.count == 2)
        #expect(try inst.jobJSON("nocsv-a")["outcome"] == "succeeded")
        #expect(inst.api.allLines.contains("CSV-429 quota-b"))
        #expect(try inst.jobJSON("quota-b")["outcome"] == "succeeded")
        #expect(inst.daemonLog.contains("dataset/quota-b: http://127.0.0.1:\(inst.port)/v0/datasets/quota-b/csv answered HTTP 429: quota or rate limit exhausted"))
    }

    @Test func unknownStatusIsWarnedOnceAndMalformedBodiesFailAtTimeout() throws {
        let inst = try Installation(sections: """
            [kind shortlived]
            preset = dataset
            status_url = {API}/v0/datasets/{id}
            header = x-api-key: ${file:{KEYFILE}}
            poll_interval = 200ms
            max_poll_interval = 500ms
            timeout = 3s
            """)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "dataset", "odd-a", "odd-b"]).status == 0)
        #expect(try inst.ctl(["add", "shortlived", "garbage-1000-x"]).status == 0)
        for id in ["odd-a", "odd-b"] { #expect(try inst.waitForResult(id), "\(id)") }
        #expect(try inst.waitForResult("garbage-1000-x", kind: "shortlived", timeout: 30))
        // Six answers with an unknown status, one warning for the kind and value.
        #expect(inst.api.allLines.filter { $0.hasPrefix("STATUS odd-") && $0.hasSuffix(" throttled") }.count == 6)
        #expect(inst.daemonLog.components(separatedBy: "unknown API status \"throttled\" for kind dataset").count - 1 == 1)
        #expect(try inst.jobJSON("odd-a")["outcome"] == "succeeded")
        // Bodies that are never JSON: retried, then the job fails at its timeout, saying why.
        let failed = try inst.jobJSON("garbage-1000-x", kind: "shortlived")
        #expect(failed["outcome"] == "failed")
        let reason = failed["reason"]?.scalarText ?? ""
        #expect(reason.hasPrefix("timed out: no result within 3s of registration (last problem: bad status document"), "\(reason)")
        #expect(reason.contains("body starts: <html>502 Bad Gateway</html>"))
    }

    @Test func rateLimitAndMaxPollsBoundTheRequests() throws {
        let inst = try Installation(sections: """
            [kind limited]
            preset = dataset
            status_url = {API}/v0/datasets/{id}
            header = x-api-key: ${file:{KEYFILE}}
            rate_limit = 4/s
            """, daemonLines: "max_polls = 2")
        try inst.startDaemon()
        let limited = (1...12).map { "done-0-r\($0)" }
        #expect(try inst.ctl(["add", "limited"] + limited).status == 0)
        let delayed = (1...6).map { "delay-\($0)" }
        #expect(try inst.ctl(["add", "dataset"] + delayed).status == 0)
        for id in limited { #expect(try inst.waitForResult(id, kind: "limited"), "\(id)") }
        for id in delayed { #expect(try inst.waitForResult(id), "\(id)") }
        let lines = inst.api.allLines
        // rate_limit 4/s: a burst of 4, then one every 250 ms, so 12 polls span at least 2 s
        // and no second holds more than 4 + 4.
        let times = lines.filter { $0.hasPrefix("T ") && $0.hasSuffix(" done-0-r") == false && $0.contains(" done-0-r") }
            .compactMap { Double($0.split(separator: " ")[1]) }.sorted()
        #expect(times.count == 12)
        if let first = times.first, let last = times.last { #expect(last - first >= 1.9, "12 polls in \(last - first) s") }
        for t in times { #expect(times.filter { $0 >= t && $0 < t + 1 }.count <= 8) }
        // max_polls 2: never more than two status requests at once, and two did overlap.
        let concurrent = lines.filter { $0.hasPrefix("CONCURRENT ") }.compactMap { Int($0.dropFirst(11)) }
        #expect(concurrent.count >= 6)
        #expect(concurrent.max() == 2)
    }

    @Test func pagingResumesAtAPageBoundaryAfterKill9() throws {
        let inst = try Installation(sections: Self.sections)
        try inst.startDaemon()
        #expect(try inst.ctl(["add", "bulks", "slowops-k"]).status == 0)
        // The first page is written and recorded; the second is in flight: kill -9.
        #expect(inst.api.waitForLine { $0 == "PAGE slowops-k 100 100" } != nil)
        inst.daemon?.signal(SIGKILL)
        _ = inst.daemon?.waitExit()
        try inst.startDaemon()
        #expect(try inst.waitForResult("slowops-k", kind: "bulks"), "log:\n\(inst.daemonLog)")
        let pages = inst.api.allLines.filter { $0.hasPrefix("PAGE slowops-k ") }
        #expect(pages.filter { $0 == "PAGE slowops-k 0 100" }.count == 1, "a finished page is not fetched again: \(pages)")
        #expect(pages.last == "PAGE slowops-k 200 100")
        let ops = inst.file("bulks", "slowops-k", "operations.jsonl").split(separator: "\n")
        #expect(ops.count == 250)
        #expect(ops.enumerated().allSatisfy { i, line in line.contains("\"slowops-k-op-\(i)\"") }, "in order, none twice")
    }
}
