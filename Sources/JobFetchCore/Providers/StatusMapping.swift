/// The declarative mapping from a status document to a job's state: JSON
/// Pointers into the body and the status values of each class. A preset is
/// one of these, filled in; a `[kind]` section may override any key.
public struct StatusMapping: Sendable, Equatable {
    /// Where the job object sits when the body wraps it (`{"job": {...}}`);
    /// a body without it is read as it is.
    public var unwrap: JSONPointer?
    public var statusField: JSONPointer?
    /// Status values, normalised by `normalize`: they match case-insensitively,
    /// ignoring spaces, underscores and hyphens (`In Progress` = `IN_PROGRESS`).
    public var running: [String] = []
    public var success: [String] = []
    public var failure: [String] = []
    /// Success, with a warning (and the summary) in `job.json`.
    public var partial: [String] = []
    /// Running, but nothing moves: a notice is logged when the job enters one.
    public var paused: [String] = []
    public var resultURLField: JSONPointer?
    public var inlineResultField: JSONPointer?
    /// Tried in order; the first that holds a value gives the failure reason.
    public var errorFields: [JSONPointer] = []
    /// Appended to the failure reason as "(failed at …)".
    public var failureTimeField: JSONPointer?
    public var warningsFields: [JSONPointer] = []
    public var progressField: JSONPointer?
    /// A structured breakdown published in `job.json` `summary`.
    public var summaryField: JSONPointer?
    /// Members of the summary whose nonzero count becomes a warning.
    public var summaryWarn: [String] = []
    /// A time (RFC 3339 or Unix seconds) before which polling is pointless.
    public var nextPollField: JSONPointer?
    /// Parts of the status document published as `<last token>.json`
    /// (`status.json` for the whole document).
    public var publishFields: [JSONPointer] = []
    /// A paged list fetched after success and written as JSON Lines.
    public var pages: PageSpec?

    public init() {}

    /// The mapping keys of a `[kind]` section: SPEC.md's, then this program's additions.
    public static let keys = ["status_field", "running", "success", "failure", "result_url_field",
                              "inline_result_field", "error_field", "warnings_field", "progress_field", "unwrap",
                              "partial", "paused", "failure_time_field", "summary_field", "summary_warn",
                              "next_poll_field", "publish_field",
                              "pages_url", "pages_items_field", "pages_total_field", "pages_file", "page_size"]

    public var missingKeys: [String] {
        var missing: [String] = []
        if statusField == nil { missing.append("status_field") }
        if success.isEmpty && partial.isEmpty { missing.append("success") }
        if failure.isEmpty { missing.append("failure") }
        return missing
    }

    /// The files a success writes besides a downloaded artifact.
    public var documentNames: Set<String> {
        var names = Set(publishFields.map(Self.documentName))
        names.insert("result")
        if let pages { names.insert(pages.file) }
        return names
    }

    /// `response.json` for `/response`; `status.json` for the whole document.
    public static func documentName(_ p: JSONPointer) -> String {
        (p.tokens.last.map(ArtifactName.sanitize).flatMap { $0.isEmpty ? nil : $0 } ?? "status") + ".json"
    }

    /// How status values compare: lowercased, without spaces, `_` or `-`.
    public static func normalize(_ status: String) -> String {
        String(status.lowercased().unicodeScalars.filter { $0 != " " && $0 != "_" && $0 != "-" && $0 != "\t" })
    }
}

/// A paged list such as `GET {status_url}/operations?offset=N&limit=M`.
public struct PageSpec: Sendable, Equatable {
    /// With `{status_url}` (the job's status URL without its query), `{id}`,
    /// `{offset}` and `{limit}`; relative URLs resolve against the status URL.
    public var urlTemplate: String
    public var itemsField: JSONPointer
    /// The total number of items, when the API says; else a short page ends the list.
    public var totalField: JSONPointer?
    public var file: String
    public var size: Int

    /// The upper bound on pages for one job: a server that never ends its list is a failure.
    public static let maxPages = 100_000

    public func url(statusURL: String, id: JobID, offset: Int) -> String {
        let base = statusURL.split(separator: "?", maxSplits: 1).first.map(String.init) ?? statusURL
        return urlTemplate.substituting("{status_url}", with: base)
            .substituting("{id}", with: id.rawValue)
            .substituting("{offset}", with: String(offset))
            .substituting("{limit}", with: String(size))
    }
}
