// ParsedURL (the core's RFC 3986 parser; FuzzURLAgreement holds it to
// libcurl's) and redirect/relative resolution: result
// URLs come from status documents, redirect targets from Location headers.
// Input: the base URL, a newline, the reference resolved against it.
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzURL_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzURL_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let newline = input.firstIndex(of: UInt8(ascii: "\n")) ?? input.endIndex
    let baseText = String(decoding: input[..<newline], as: UTF8.self)
    let referenceText = newline < input.endIndex ? String(decoding: input[(newline + 1)...], as: UTF8.self) : ""

    let base = try? ParsedURL(baseText)
    if let base { check(base) }
    if let reference = try? ParsedURL(referenceText) { check(reference) }
    if let base, let resolved = try? ParsedURL(referenceText, relativeTo: base) {
        check(resolved)
        // A redirect chain: resolve against the resolved URL too.
        if let again = try? ParsedURL(baseText, relativeTo: resolved) { check(again) }
    }
    // Raw text is redacted too, for the messages about a URL that does not parse.
    for text in [baseText, referenceText] { checkRedaction(text) }
    return 0
}

func check(_ u: ParsedURL) {
    precondition(u.scheme == "http" || u.scheme == "https", "scheme \(u.scheme)")
    precondition(!u.host.isEmpty, "empty host in \(u.redacted)")
    precondition((0...65535).contains(u.port), "port \(u.port)")
    let origin = u.origin
    precondition(origin.utf8.starts(with: (u.scheme + "://").utf8), "origin \(origin)")
    _ = u.isLoopback
    _ = u.lastPathSegment
    _ = u.description
    checkRedaction(u.text, userInfo: true)
    // The text is stored (job records, sidecars) and parsed again later: it
    // must mean the same URL then.
    guard let again = try? ParsedURL(u.text) else { preconditionFailure("ParsedURL.text does not parse again: \(u.redacted)") }
    precondition(again.scheme == u.scheme && again.host == u.host && again.port == u.port,
                 "ParsedURL.text parses to another origin: \(u.origin) then \(again.origin)")
}

/// The redacted form goes to logs and job.json: no query, no fragment, no
/// user info. Checked on bytes: a '?' that a combining mark joins to the
/// character before it is still a '?' to libcurl and to whoever reads the log.
func checkRedaction(_ text: String, userInfo: Bool = false) {
    let r = ParsedURL.redact(text)
    let b = Array(r.utf8)
    precondition(!b.contains(UInt8(ascii: "?")) && !b.contains(UInt8(ascii: "#")), "redact kept a query or fragment: \(r.debugDescription)")
    precondition(ParsedURL.redact(r) == r, "redact is not idempotent: \(r.debugDescription)")
    guard userInfo, let schemeEnd = firstRange(of: Array("://".utf8), in: b) else { return }
    let rest = b[schemeEnd...]
    let authority = rest[..<(rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex)]
    precondition(!authority.contains(UInt8(ascii: "@")), "redact kept user info: \(r.debugDescription)")
}

/// The index just past the first occurrence of `needle` in `haystack`.
func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
        return i + needle.count
    }
    return nil
}
