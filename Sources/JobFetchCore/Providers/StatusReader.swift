/// What one status document says about a job.
public enum Observation: Equatable, Sendable {
    /// `paused`: the status is one of the mapping's `paused` values.
    case running(progress: Double?, paused: Bool)
    /// `resultURL` is as the document has it (it may be relative).
    case succeeded(resultURL: String?, inline: JSONValue?, warnings: [String])
    case failed(reason: String)
    /// A status value the mapping does not know: keep polling, warn once.
    case unknown(status: String)
    /// Not JSON, or no status where the mapping says: retry until the job's timeout.
    case malformed(problem: String)
}

/// A part of the status document published as a file of its own.
public struct PublishedDocument: Equatable, Sendable {
    public var name: String
    public var value: JSONValue
}

public struct StatusReading: Sendable {
    public var observation: Observation
    public var document: JSONValue?
    public var apiStatus: String?
    /// The mapping's `summary_field` value (a results breakdown, counts).
    public var summary: JSONValue?
    /// Unix time before which the API says polling is pointless.
    public var notBefore: Double?
    /// Documents to publish beside the artifacts (on success).
    public var published: [PublishedDocument] = []

    init(_ observation: Observation, document: JSONValue? = nil, apiStatus: String? = nil) {
        self.observation = observation
        self.document = document
        self.apiStatus = apiStatus
    }
}

/// Applies a `StatusMapping` to a status body. Pure: no I/O, no clocks.
public enum StatusReader {
    public static func read(_ body: [UInt8], mapping m: StatusMapping) -> StatusReading {
        let document: JSONValue
        do { document = try JSONParser.parse(body) } catch {
            return StatusReading(.malformed(problem: "status body is not JSON (\(error))"))
        }
        var job = document
        if let unwrap = m.unwrap, let inner = document.value(at: unwrap), case .object = inner { job = inner }
        guard case .object = job else {
            return StatusReading(.malformed(problem: "status body is not a JSON object"), document: document)
        }
        guard let pointer = m.statusField, let statusValue = job.value(at: pointer), let fullStatus = statusValue.scalarText else {
            let field = m.statusField?.description ?? "(none)"
            return StatusReading(.malformed(problem: "status body has no status at \(field)"), document: document)
        }
        // Server text is kept to a bounded size from here on (stored, logged, shown).
        let status = ServerText.capped(fullStatus)
        var reading = StatusReading(.unknown(status: status), document: document, apiStatus: status)
        reading.summary = m.summaryField.flatMap { job.value(at: $0) }.flatMap { $0.isNull ? nil : $0 }
        reading.notBefore = m.nextPollField.flatMap { job.value(at: $0) }.flatMap(time(_:))

        let key = StatusMapping.normalize(fullStatus)
        if m.running.contains(key) || m.paused.contains(key) {
            let progress = m.progressField.flatMap { job.value(at: $0)?.doubleValue }.flatMap { $0.isFinite ? $0 : nil }
            reading.observation = .running(progress: progress, paused: m.paused.contains(key))
        } else if m.success.contains(key) || m.partial.contains(key) {
            let url = m.resultURLField.flatMap { job.value(at: $0)?.scalarText }.flatMap { $0.isEmpty ? nil : $0 }
            let inline = m.inlineResultField.flatMap { job.value(at: $0) }.flatMap { $0.isNull ? nil : $0 }
            var warnings: [String] = []
            if m.partial.contains(key) {
                let counts = reading.summary.map { ": \(m.summaryField.flatMap(\.tokens.last) ?? "summary") \(JSONWriter.string($0))" } ?? ""
                warnings.append("the API reported partial success (status \(status))\(counts)")
            }
            if let summary = reading.summary, let w = summaryWarning(summary, members: m.summaryWarn, field: m.summaryField) {
                warnings.append(w)
            }
            warnings += texts(job, m.warningsFields)
            reading.observation = .succeeded(resultURL: url, inline: inline, warnings: bounded(warnings))
            reading.published = m.publishFields.compactMap { p in
                guard let v = job.value(at: p), !v.isNull else { return nil }
                return PublishedDocument(name: StatusMapping.documentName(p), value: v)
            }
        } else if m.failure.contains(key) {
            var reason = messages(job, m.errorFields).first?.joined(separator: "; ") ?? "the API reported status \"\(status)\" and gave no reason"
            if let at = m.failureTimeField.flatMap({ job.value(at: $0)?.scalarText }), !at.isEmpty {
                reason += " (failed at \(at))"
            }
            reading.observation = .failed(reason: ServerText.capped(reason))
        }
        return reading
    }

    /// The messages at each of `pointers` that holds any, in order: a list
    /// (also a list inside a JSON string, as `gql_errors` is) gives one
    /// message per item; an item with a `message` (GraphQL errors) gives
    /// that message and its path; other structures are written as JSON.
    static func messages(_ doc: JSONValue, _ pointers: [JSONPointer]) -> [[String]] {
        pointers.compactMap { p -> [String]? in
            guard let v = doc.value(at: p) else { return nil }
            var value = v
            if case .string(let s) = v {
                let t = s.trimmingWhitespace()
                if t.hasPrefix("[") || t.hasPrefix("{"), let inner = try? JSONParser.parse(t) { value = inner }
            }
            let items: [JSONValue]
            if case .array(let a) = value { items = a } else { items = [value] }
            let texts = items.compactMap(message(_:)).filter { !$0.isEmpty }
            return texts.isEmpty ? nil : texts
        }
    }

    /// The warnings at `pointers`: every message of every field.
    static func texts(_ doc: JSONValue, _ pointers: [JSONPointer]) -> [String] {
        messages(doc, pointers).flatMap { $0 }
    }

    private static func message(_ item: JSONValue) -> String? {
        switch item {
        case .null: return nil
        case .object(let members) where members.isEmpty: return nil
        case .array(let a) where a.isEmpty: return nil
        case .object:
            guard let m = item["message"]?.scalarText else { return JSONWriter.string(item) }
            if case .array(let path)? = item["path"], !path.isEmpty {
                return m + " (at \(path.compactMap(\.scalarText).joined(separator: ".")))"
            }
            return m
        default:
            return item.scalarText ?? JSONWriter.string(item)
        }
    }

    /// At most this many warnings are kept of one document (GraphQL error lists can be long).
    public static let maxWarnings = 50

    /// Each warning capped, and at most `maxWarnings` of them, the last saying how many were left out.
    static func bounded(_ warnings: [String]) -> [String] {
        ServerText.firstOf(warnings, max: maxWarnings - 1) { "… and \($0) more warning(s), in the status document" }.map { ServerText.capped($0) }
    }

    /// "results: errors 3, warnings 2" for the `members` that are nonzero.
    static func summaryWarning(_ summary: JSONValue, members: [String], field: JSONPointer?) -> String? {
        let nonzero = members.compactMap { name -> String? in
            guard let n = summary[name]?.doubleValue, n != 0 else { return nil }
            return "\(name) \(summary[name]?.scalarText ?? "")"
        }
        guard !nonzero.isEmpty else { return nil }
        return "\(field?.tokens.last ?? "summary") reports \(nonzero.joined(separator: ", "))"
    }

    /// A point in time as APIs write it: RFC 3339 text, or Unix seconds
    /// (milliseconds when the number is that large).
    /// Anything else (`1e300`, a negative or non-finite number) is no time at all.
    static func time(_ v: JSONValue) -> Double? {
        func unix(_ n: Double) -> Double? { Timestamp.plausible(n > 1e11 ? n / 1000 : n) }
        if case .number(let text) = v, let n = Double(text) { return unix(n) }
        if case .string(let s) = v { return Timestamp.parse(s).flatMap(Timestamp.plausible) ?? Double(s).flatMap(unix) }
        return nil
    }
}
