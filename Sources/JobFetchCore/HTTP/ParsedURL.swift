import Foundation
import CCurl

/// An absolute http(s) URL, parsed by libcurl's URL API so the daemon and
/// libcurl agree on what every URL means (relative resolution included).
public struct ParsedURL: Equatable, Sendable, CustomStringConvertible {
    public let text: String
    public let scheme: String
    public let host: String
    public let port: Int
    public let hasQuery: Bool

    public init(_ text: String) throws(JobFetchError) {
        try self.init(text, relativeTo: nil)
    }

    /// Resolves `reference` against `base` (RFC 3986), as a browser would.
    public init(_ reference: String, relativeTo base: ParsedURL?) throws(JobFetchError) {
        guard let h = curl_url() else { throw JobFetchError("out of memory parsing a URL") }
        defer { curl_url_cleanup(h) }
        if let base {
            guard curl_url_set(h, CURLUPART_URL, base.text, 0) == CURLUE_OK else {
                throw JobFetchError("invalid base URL \(base.redacted)")
            }
        }
        let rc = curl_url_set(h, CURLUPART_URL, reference, UInt32(CURLU_NON_SUPPORT_SCHEME))
        guard rc == CURLUE_OK else {
            throw JobFetchError("invalid URL \(JobID.quoted(ParsedURL.redact(reference))): \(String(cString: curl_url_strerror(rc)))")
        }
        func part(_ p: CURLUPart, _ flags: Int32 = 0) -> String? {
            var out: UnsafeMutablePointer<CChar>?
            guard curl_url_get(h, p, &out, UInt32(flags)) == CURLUE_OK, let out else { return nil }
            defer { curl_free(out) }
            return String(cString: out)
        }
        guard let full = part(CURLUPART_URL), let scheme = part(CURLUPART_SCHEME)?.lowercased(),
              let host = part(CURLUPART_HOST)?.lowercased() else {
            throw JobFetchError("URL \(JobID.quoted(ParsedURL.redact(reference))) has no host")
        }
        guard scheme == "http" || scheme == "https" else {
            throw JobFetchError("URL \(JobID.quoted(ParsedURL.redact(reference))) is not http or https")
        }
        self.text = full
        self.scheme = scheme
        self.host = host
        self.port = Int(part(CURLUPART_PORT, CURLU_DEFAULT_PORT) ?? "") ?? (scheme == "https" ? 443 : 80)
        self.hasQuery = part(CURLUPART_QUERY) != nil
    }

    public var description: String { redacted }

    /// scheme://host:port — credentials go only to the origin they were configured for.
    public var origin: String { "\(scheme)://\(host):\(port)" }

    public var isLoopback: Bool {
        host == "localhost" || host == "[::1]" || host == "::1" || host.hasPrefix("127.")
            && host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
    }

    /// The URL without query string, fragment or user info: safe for logs
    /// and `job.json` (presigned URLs carry their signature in the query).
    public var redacted: String { ParsedURL.redact(text) }

    /// Works on bytes, as libcurl does: a `?` followed by a combining mark is
    /// one Character to Swift but still starts the query (found by fuzzing:
    /// a Character search kept such a query, signature and all).
    public static func redact(_ text: String) -> String {
        var b = Array(text.utf8)
        if let cut = b.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) { b.removeSubrange(cut...) }
        let separator = Array("://".utf8)
        if let start = (0..<max(0, b.count - 2)).first(where: { b[$0..<($0 + 3)].elementsEqual(separator) }) {
            let rest = start + 3
            let authorityEnd = b[rest...].firstIndex(of: UInt8(ascii: "/")) ?? b.endIndex
            if let at = b[rest..<authorityEnd].lastIndex(of: UInt8(ascii: "@")) { b.removeSubrange(rest...at) }
        }
        return String(decoding: b, as: UTF8.self)
    }

    /// The last non-empty path segment, percent-decoded, for naming an artifact.
    public var lastPathSegment: String? {
        guard let h = curl_url() else { return nil }
        defer { curl_url_cleanup(h) }
        guard curl_url_set(h, CURLUPART_URL, text, 0) == CURLUE_OK else { return nil }
        var out: UnsafeMutablePointer<CChar>?
        guard curl_url_get(h, CURLUPART_PATH, &out, UInt32(CURLU_URLDECODE)) == CURLUE_OK, let out else { return nil }
        defer { curl_free(out) }
        return String(cString: out).split(separator: "/").last.map(String.init)
    }
}
