/// Takes secrets out of URLs inside API documents before they are
/// published (`job.json` `status`, `status.json`, `response.json`) or shown:
/// presigned URLs carry their signature, credential and token in the query.
/// The parameter stays, its value becomes `REDACTED`; user info is dropped.
public enum SignatureRedactor {
    /// Query parameter names (lowercased) containing one of these carry a secret.
    static let secretWords = ["sig", "token", "key", "auth", "secret", "credential", "password", "session", "security"]

    public static func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let s): return .string(redactURL(s))
        case .array(let items): return .array(items.map(redact))
        case .object(let members): return .object(members.map { JSONMember($0.key, redact($0.value)) })
        default: return value
        }
    }

    /// `s` with secret query values replaced, when it is a URL (absolute or
    /// a path) with a query; any other text unchanged.
    /// Split by Unicode scalars, not Characters: a combining mark after `?`,
    /// `&` or `=` must not hide a parameter from the redactor.
    public static func redactURL(_ s: String) -> String {
        let u = s.unicodeScalars
        guard ["http://", "https://", "/"].contains(where: { s.utf8.starts(with: $0.utf8) }),
              let q = u.firstIndex(of: "?") else { return s }
        var base = String(u[..<q])
        if base.unicodeScalars.contains("@") { base = ParsedURL.redact(base) }
        var rest = u[u.index(after: q)...]
        var fragment = ""
        if let hash = rest.firstIndex(of: "#") { fragment = String(rest[hash...]); rest = rest[..<hash] }
        let params = rest.split(separator: "&", omittingEmptySubsequences: false).map { p -> String in
            guard let eq = p.firstIndex(of: "=") else { return String(p) }
            // ASCII only: a combining mark must not turn "token" into another word.
            let name = String(String.UnicodeScalarView(p[..<eq].filter(\.isASCII))).lowercased()
            return secretWords.contains(where: { name.contains($0) }) ? "\(String(p[..<eq]))=REDACTED" : String(p)
        }
        return base + "?" + params.joined(separator: "&") + fragment
    }
}
