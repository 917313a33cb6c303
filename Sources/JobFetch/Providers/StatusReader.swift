/// What one status document says about a job.
public enum Observation: Equatable, Sendable {
    case running(progress: Double?)
    /// `resultURL` is as the document has it (it may be relative).
    case succeeded(resultURL: String?, inline: JSONValue?, warnings: [String])
    case failed(reason: String)
    /// A status value the mapping does not know: keep polling, warn once.
    case unknown(status: String)
    /// Not JSON, or no status where the mapping says: retry until the job's timeout.
    case malformed(problem: String)
}

public struct StatusReading: Sendable {
    public var observation: Observation
    public var document: JSONValue?
    public var apiStatus: String?
}

/// Applies a `StatusMapping` to a status body. Pure: no I/O, no clocks.
public enum StatusReader {
    public static func read(_ body: [UInt8], mapping m: StatusMapping) -> StatusReading {
        let document: JSONValue
        do { document = try JSONParser.parse(body) } catch {
            return StatusReading(observation: .malformed(problem: "status body is not JSON (\(error))"), document: nil, apiStatus: nil)
        }
        var job = document
        if let unwrap = m.unwrap, let inner = document.value(at: unwrap), case .object = inner { job = inner }
        guard case .object = job else {
            return StatusReading(observation: .malformed(problem: "status body is not a JSON object"), document: document, apiStatus: nil)
        }
        guard let pointer = m.statusField, let statusValue = job.value(at: pointer), let status = statusValue.scalarText else {
            let field = m.statusField?.description ?? "(none)"
            return StatusReading(observation: .malformed(problem: "status body has no status at \(field)"), document: document, apiStatus: nil)
        }
        let key = status.lowercased().trimmingWhitespace()
        let observation: Observation
        if m.running.contains(key) {
            observation = .running(progress: m.progressField.flatMap { job.value(at: $0)?.doubleValue })
        } else if m.success.contains(key) {
            let url = m.resultURLField.flatMap { job.value(at: $0)?.scalarText }.flatMap { $0.isEmpty ? nil : $0 }
            let inline = m.inlineResultField.flatMap { job.value(at: $0) }.flatMap { $0.isNull ? nil : $0 }
            observation = .succeeded(resultURL: url, inline: inline, warnings: texts(job, m.warningsFields))
        } else if m.failure.contains(key) {
            let reason = texts(job, m.errorFields).first ?? "the API reported status \"\(status)\" with no reason"
            observation = .failed(reason: reason)
        } else {
            observation = .unknown(status: status)
        }
        return StatusReading(observation: observation, document: document, apiStatus: status)
    }

    /// The non-empty texts at `pointers`, in order; structured values are written as JSON.
    static func texts(_ doc: JSONValue, _ pointers: [JSONPointer]) -> [String] {
        pointers.compactMap { p -> String? in
            guard let v = doc.value(at: p), !v.isNull else { return nil }
            let text = v.scalarText ?? JSONWriter.string(v)
            return text.isEmpty || text == "[]" || text == "{}" ? nil : text
        }
    }
}
