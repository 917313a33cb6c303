/// A job's identity on its API: 1 to 200 characters of `A-Z a-z 0-9 . _ : -`,
/// not starting with `.`. Validated at the door, so an ID is always safe to
/// use as a path component and inside a URL path without escaping.
public struct JobID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public static let maxLength = 200

    public init(_ text: String) throws(JobFetchError) {
        if let problem = JobID.problem(with: text) { throw JobFetchError(problem) }
        rawValue = text
    }

    public var description: String { rawValue }
    public static func < (a: JobID, b: JobID) -> Bool { a.rawValue < b.rawValue }

    /// Why `text` is not a valid ID, or nil if it is.
    public static func problem(with text: String) -> String? {
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return "job ID is empty" }
        if bytes.count > maxLength {
            return "job ID is \(bytes.count) characters long; at most \(maxLength) are allowed"
        }
        if bytes[0] == UInt8(ascii: ".") { return "job ID \(quoted(text)) starts with '.'" }
        if let bad = bytes.first(where: { !isAllowed($0) }) {
            return "job ID \(quoted(text)) contains \(describe(bad)); only A-Z a-z 0-9 . _ : - are allowed"
        }
        return nil
    }

    static func isAllowed(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: ":"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// A printable rendering of untrusted text for messages: control and
    /// non-ASCII bytes are escaped, long text is cut.
    package static func quoted(_ text: String, limit: Int = 60) -> String {
        var out = "\""
        for (i, b) in text.utf8.enumerated() {
            if i == limit { out += "…"; break }
            if (0x20...0x7E).contains(b) && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
            }
        }
        return out + "\""
    }

    static func describe(_ b: UInt8) -> String {
        switch b {
        case 0: return "a NUL byte"
        case UInt8(ascii: "/"): return "a '/'"
        case UInt8(ascii: " "): return "a space"
        case 0x21...0x7E: return "'\(Character(UnicodeScalar(b)))'"
        default: return "byte 0x" + (b < 16 ? "0" : "") + String(b, radix: 16)
        }
    }
}

/// A `[kind NAME]` name: it becomes a directory name, so it is held to
/// `A-Z a-z 0-9 _ -`, 1 to 64 characters.
public enum KindName {
    public static func problem(with text: String) -> String? {
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return "kind name is empty" }
        if bytes.count > 64 { return "kind name is longer than 64 characters" }
        if let bad = bytes.first(where: { !isAllowed($0) }) {
            return "kind name \(JobID.quoted(text)) contains \(JobID.describe(bad)); only A-Z a-z 0-9 _ - are allowed"
        }
        return nil
    }

    static func isAllowed(_ b: UInt8) -> Bool {
        b != UInt8(ascii: ".") && b != UInt8(ascii: ":") && JobID.isAllowed(b)
    }
}

/// A job: `(kind, id)`.
public struct JobKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let kind: String
    public let id: JobID
    public init(kind: String, id: JobID) { self.kind = kind; self.id = id }
    /// The inverse of `description`: `kind/id`, nil unless both parts are valid.
    public init?(parsing text: String) {
        guard let slash = text.firstIndex(of: "/"), let id = try? JobID(String(text[text.index(after: slash)...])),
              KindName.problem(with: String(text[..<slash])) == nil else { return nil }
        self.init(kind: String(text[..<slash]), id: id)
    }
    public var description: String { "\(kind)/\(id)" }
    public static func < (a: JobKey, b: JobKey) -> Bool { (a.kind, a.id) < (b.kind, b.id) }
}
