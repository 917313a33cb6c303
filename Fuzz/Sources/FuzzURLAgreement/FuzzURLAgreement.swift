// Differential fuzzing of ParsedURL (JobFetchCore, pure Swift) against libcurl's URL
// API (7.88.1 on Debian 12), which is what connects using ParsedURL.text.
// Input: the base URL, a newline, a reference resolved against it.
// Whenever ParsedURL accepts (the base alone, the reference alone, the
// reference resolved against the base), libcurl must accept the same input
// and agree on scheme, host, port and query presence; libcurl must accept our
// `text` and see the same URL in it; and `text` must be a fixed point of ours.
import JobFetchCore
import CCurlReference
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzURLAgreement_main`;
/// see Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzURLAgreement_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let newline = input.firstIndex(of: UInt8(ascii: "\n")) ?? input.endIndex
    let baseText = String(decoding: input[..<newline], as: UTF8.self)
    let referenceText = newline < input.endIndex ? String(decoding: input[(newline + 1)...], as: UTF8.self) : ""

    if let reference = try? ParsedURL(referenceText) {
        check(reference, against: Curl(referenceText), path: true, "reference \(referenceText.debugDescription)")
    }
    guard let base = try? ParsedURL(baseText) else { return 0 }
    check(base, against: Curl(baseText), path: true, "base \(baseText.debugDescription)")
    guard let resolved = try? ParsedURL(referenceText, relativeTo: base) else { return 0 }
    // RFC 3986 §5.2.2 ignores the base's fragment; curl's concat_url does not
    // (it looks for the last '/' and the first '?' in the whole base URL, its
    // fragment included), so curl gets the base without it.
    let baseForCurl = String(base.text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0])
    let curlPathDiffers = curlCollapsesSlash(referenceText) || curlDropsEmptySegment(referenceText, base: base)
    check(resolved, against: Curl(referenceText, base: baseForCurl), path: !curlPathDiffers,
          "\(referenceText.debugDescription) against \(baseText.debugDescription)")
    return 0
}

/// curl 7.88's concat_url drops one "./" and any "../" from the front of a
/// relative reference and then joins the rest to the base's directory
/// without the slash when the rest starts with '/' or '?': "../?x" against
/// http://a/b/c/d gives http://a/b?x (RFC 3986: http://a/b/?x), and ".//x"
/// gives http://a/b/c/x (RFC: http://a/b/c//x). Scheme, host, port, query and
/// fragment are still compared; only the path is not.
func curlCollapsesSlash(_ reference: String) -> Bool {
    var r = Substring(reference)
    if r.hasPrefix("./") { r = r.dropFirst(2) }
    while r.hasPrefix("../") { r = r.dropFirst(3) }
    return r.count < reference.count && (r.hasPrefix("/") || r.hasPrefix("?"))
}

/// concat_url finds the base's directory with string searches that skip the
/// slash after the host, so a base path that starts with an empty segment
/// ("//") loses it: "g" or "../g" against https://h//a/b gives https://h/g
/// (RFC 3986: https://h//g). Such paths are real (an S3 key "/k" is
/// https://bucket.s3.amazonaws.com//k), so ours keeps RFC's answer.
func curlDropsEmptySegment(_ reference: String, base: ParsedURL) -> Bool {
    let path = base.text.utf8.split(separator: UInt8(ascii: "/"), maxSplits: 3, omittingEmptySubsequences: false)
    let baseStartsWithTwoSlashes = path.count == 4 && path[3].starts(with: "/".utf8)
    // A relative-path reference: no scheme (RFC 3986 appendix B: "x:" with x
    // not empty, before any '/', '?' or '#'), and not '/', '?' or '#' first.
    let firstSegment = reference.utf8.prefix(while: { $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") })
    let hasScheme = (firstSegment.firstIndex(of: UInt8(ascii: ":")).map { $0 != firstSegment.startIndex }) ?? false
    let relativePath = !hasScheme && !firstSegment.isEmpty
    return baseStartsWithTwoSlashes && relativePath
}

func check(_ ours: ParsedURL, against curl: Curl?, path comparePath: Bool, _ what: @autoclosure () -> String) {
    guard let curl else { preconditionFailure("ours accepts, curl rejects: \(what()) -> \(ours.text.debugDescription)") }
    precondition(curl.scheme == ours.scheme && curl.host.lowercased() == ours.host && curl.port == ours.port
                 && (curl.query != nil) == ours.hasQuery,
                 "ours and curl disagree on \(what()): ours \(ours.origin) query \(ours.hasQuery), curl \(curl)")
    guard let again = Curl(ours.text) else { preconditionFailure("curl rejects our text \(ours.text.debugDescription) for \(what())") }
    precondition(again.scheme == ours.scheme && again.host == ours.host && again.port == ours.port
                 && (again.query != nil) == ours.hasQuery,
                 "curl reads our text \(ours.text.debugDescription) as \(again) for \(what())")
    // curl's URL text of our text is our text, but for an empty query's '?'.
    precondition(again.url == ours.textWithoutEmptyQuery, "curl writes our text \(ours.text.debugDescription) as \(again.url.debugDescription)")
    // Our normalization keeps what curl sees in the input (bar the host's case).
    var seen = curl
    seen.host = seen.host.lowercased()
    if !comparePath { seen.path = again.path }
    seen.url = again.url
    precondition(seen == again, "curl reads \(what()) as \(seen) but our text \(ours.text.debugDescription) as \(again)")
    guard let fixed = try? ParsedURL(ours.text) else { preconditionFailure("our text does not parse again: \(ours.text.debugDescription)") }
    precondition(fixed == ours, "our text is not a fixed point: \(ours.text.debugDescription) then \(fixed.text.debugDescription)")
    _ = (ours.lastPathSegment, ours.isLoopback, ours.redacted)
}

extension ParsedURL {
    var textWithoutEmptyQuery: String {
        let b = Array(text.utf8)
        guard let mark = b.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }), b[mark] == UInt8(ascii: "?"),
              mark + 1 == b.count || b[mark + 1] == UInt8(ascii: "#") else { return text }
        return String(decoding: b[..<mark] + b[(mark + 1)...], as: UTF8.self)
    }
}

/// What libcurl's URL API makes of a URL (resolved against `base` if given).
struct Curl: Equatable, CustomStringConvertible {
    var url, scheme, host, path: String
    var port: Int
    var user, password, query, fragment: String?

    init?(_ text: String, base: String? = nil) {
        guard let h = curl_url() else { fatalError("out of memory") }
        defer { curl_url_cleanup(h) }
        let flags = UInt32(CURLU_NON_SUPPORT_SCHEME)
        if let base, curl_url_set(h, CURLUPART_URL, base, flags) != CURLUE_OK {
            preconditionFailure("curl rejects our base text \(base.debugDescription)")
        }
        guard curl_url_set(h, CURLUPART_URL, text, flags) == CURLUE_OK else { return nil }
        func part(_ p: CURLUPart, _ flags: Int32 = 0) -> String? {
            var out: UnsafeMutablePointer<CChar>?
            guard curl_url_get(h, p, &out, UInt32(flags)) == CURLUE_OK, let out else { return nil }
            defer { curl_free(out) }
            return String(cString: out)
        }
        guard let url = part(CURLUPART_URL), let scheme = part(CURLUPART_SCHEME), let host = part(CURLUPART_HOST),
              let port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT).flatMap({ Int($0) }), let path = part(CURLUPART_PATH) else {
            preconditionFailure("curl accepts \(text.debugDescription) but misses a part")
        }
        (self.url, self.scheme, self.host, self.port, self.path) = (url, scheme, host, port, path)
        (user, password, query, fragment) = (part(CURLUPART_USER), part(CURLUPART_PASSWORD), part(CURLUPART_QUERY), part(CURLUPART_FRAGMENT))
    }

    var description: String {
        "\(url.debugDescription) (scheme \(scheme), host \(host), port \(port), path \(path.debugDescription), "
            + "query \(query.debugDescription), fragment \(fragment.debugDescription), user \(user.debugDescription))"
    }
}
