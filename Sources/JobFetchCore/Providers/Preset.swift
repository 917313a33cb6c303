/// The presets: data, not code. Each fills a `StatusMapping` for one of
/// the five job shapes of SPEC.md; a `[kind]` section may override any key.
public enum Preset {
    public static let names = ["bulk-job", "dataset", "bulk-process", "export", "job", "custom"]

    public static func mapping(named name: String) -> StatusMapping? {
        switch name {
        case "bulk-job": return bulkJob
        case "dataset": return dataset
        case "bulk-process": return bulkProcess
        case "export": return export
        case "job": return job
        case "custom": return StatusMapping()
        default: return nil
        }
    }

    private static func p(_ s: String) -> JSONPointer {
        // Preset pointers are literals written here; PresetTests parse every one.
        (try? JSONPointer(s)) ?? JSONPointer.root
    }

    private static func n(_ values: String...) -> [String] { values.map(StatusMapping.normalize) }

    /// BulkJobStatusResponse: HTTP 202 while running and 200 when done, with
    /// the same body. PascalCase statuses; `url` (often a presigned, gzipped
    /// JSONL file on another origin) or an inline `raw_result` under 5 MB;
    /// `gql_errors` is a JSON string: a warning, or the reason on failure.
    public static var bulkJob: StatusMapping {
        var m = StatusMapping()
        m.statusField = p("/status")
        m.running = n("InProgress", "Queued", "Running", "Pending", "Created", "Submitted")
        m.success = n("Success", "Completed", "Succeeded")
        m.partial = n("PartialSuccess")
        m.failure = n("Failure", "Failed", "Cancelled", "Canceled", "ResultsExpired", "Expired", "Error")
        m.resultURLField = p("/url")
        m.inlineResultField = p("/raw_result")
        m.warningsFields = [p("/gql_errors")]
        m.errorFields = [p("/gql_errors"), p("/error"), p("/message")]
        m.progressField = p("/progress")
        return m
    }

    /// GetDatasetJobStatus200Response: `processing` → `completed` with
    /// `csv_url` (possibly relative to the status URL), or `error`.
    public static var dataset: StatusMapping {
        var m = StatusMapping()
        m.statusField = p("/status")
        m.running = n("processing", "pending", "queued")
        m.success = n("completed")
        m.failure = n("error", "failed")
        m.resultURLField = p("/csv_url")
        m.errorFields = [p("/error"), p("/message")]
        m.progressField = p("/progress")
        return m
    }

    /// `GET /bulks/{id}` (v3 bulk process): the status document and every
    /// page of `{status_url}/operations` are the result.
    public static var bulkProcess: StatusMapping {
        var m = StatusMapping()
        m.statusField = p("/status")
        m.running = n("SUBMITTED", "RUNNING")
        m.paused = n("PAUSED")
        m.success = n("COMPLETED")
        m.partial = n("PARTIALLY_COMPLETED")
        m.failure = n("FAILED", "CANCELLED", "CANCELED")
        m.errorFields = [p("/error"), p("/message"), p("/errorMessage")]
        m.summaryField = p("/operationStatusCounts")
        m.publishFields = [JSONPointer.root]
        m.pages = PageSpec(urlTemplate: "{status_url}/operations?offset={offset}&limit={limit}",
                           itemsField: p("/operations"), totalField: p("/count"), file: "operations.jsonl", size: 100)
        return m
    }

    /// ExportStatus: `Pending`, `In Progress`, then `Successful` with a
    /// `results` breakdown, or `Failed` with `error` and `failure_time`;
    /// `estimated_completion` says when polling is worth it again.
    public static var export: StatusMapping {
        var m = StatusMapping()
        m.statusField = p("/status")
        m.running = n("Pending", "In Progress", "Queued", "Running")
        m.success = n("Successful", "Completed", "Success")
        m.failure = n("Failed", "Failure", "Cancelled", "Canceled")
        m.errorFields = [p("/error"), p("/message")]
        m.failureTimeField = p("/failure_time")
        m.summaryField = p("/results")
        m.summaryWarn = ["errors", "warnings"]
        m.nextPollField = p("/estimated_completion")
        m.progressField = p("/progress")
        return m
    }

    /// JobSchema: possibly wrapped as `{"job": {...}}`; `response` is the
    /// result (published as `response.json`; `response.url` downloaded).
    public static var job: StatusMapping {
        var m = StatusMapping()
        m.unwrap = p("/job")
        m.statusField = p("/status")
        m.running = n("processing", "pending", "queued", "running")
        m.success = n("success", "succeeded", "completed")
        m.failure = n("failure", "error", "failed")
        m.errorFields = [p("/response/error"), p("/response/detail"), p("/response/response/error"), p("/error"), p("/detail")]
        m.publishFields = [p("/response")]
        m.resultURLField = p("/response/url")
        m.progressField = p("/progress")
        return m
    }
}

extension JSONPointer {
    static let root: JSONPointer = { do { return try JSONPointer("") } catch { preconditionFailure("empty pointer is valid") } }()
}
