/// The declarative mapping from a status document to a job's state: JSON
/// Pointers into the body and the status values of each class. A preset is
/// one of these, filled in; a `[kind]` section may override any key.
public struct StatusMapping: Sendable, Equatable {
    public var unwrap: JSONPointer?
    public var statusField: JSONPointer?
    /// Status values, lowercased: they match case-insensitively.
    public var running: [String] = []
    public var success: [String] = []
    public var failure: [String] = []
    public var resultURLField: JSONPointer?
    public var inlineResultField: JSONPointer?
    /// Tried in order; the first that holds a value gives the failure reason.
    public var errorFields: [JSONPointer] = []
    public var warningsFields: [JSONPointer] = []
    public var progressField: JSONPointer?

    public init() {}

    /// The mapping keys of a `[kind]` section, in the order of SPEC.md.
    public static let keys = ["status_field", "running", "success", "failure", "result_url_field",
                              "inline_result_field", "error_field", "warnings_field", "progress_field", "unwrap"]

    public var missingKeys: [String] {
        var missing: [String] = []
        if statusField == nil { missing.append("status_field") }
        if success.isEmpty { missing.append("success") }
        if failure.isEmpty { missing.append("failure") }
        return missing
    }
}

/// The presets: data, not code.
public enum Preset {
    public static let names = ["dataset", "custom"]

    public static func mapping(named name: String) -> StatusMapping? {
        switch name {
        case "dataset": return dataset
        case "custom": return StatusMapping()
        default: return nil
        }
    }

    private static func p(_ s: String) -> JSONPointer {
        // Preset pointers are literals written here; a bad one is a build-time bug caught by tests.
        (try? JSONPointer(s)) ?? JSONPointer.root
    }

    /// GetDatasetJobStatus200Response: `processing` → `completed` with
    /// `csv_url` (possibly relative to the status URL), or `error`.
    public static var dataset: StatusMapping {
        var m = StatusMapping()
        m.statusField = p("/status")
        m.running = ["processing", "pending", "queued"]
        m.success = ["completed"]
        m.failure = ["error", "failed"]
        m.resultURLField = p("/csv_url")
        m.errorFields = [p("/error"), p("/message")]
        m.progressField = p("/progress")
        return m
    }
}

extension JSONPointer {
    static let root: JSONPointer = { do { return try JSONPointer("") } catch { preconditionFailure("empty pointer is valid") } }()
}
