// Response headers a server chooses: Content-Range (resumed downloads),
// Content-Disposition and Content-Type (the published file's name),
// Retry-After and the rate-limit reset headers (when to ask again), HTTP
// dates. Input: the first line is the download's URL; every later line is
// fed to each parser as a header value, and also read as a `Name: value`
// line as Transfer.receiveHeader reads one.
@testable import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzHTTPHeaders_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzHTTPHeaders_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

let now = 1_795_000_000.0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Lines split on the byte, as libcurl hands over header lines ("\r\n" is one Character, not two).
    var lines = UnsafeBufferPointer(start: data, count: size).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        .prefix(32).map { String(decoding: $0, as: UTF8.self) }
    let url = lines.isEmpty ? nil : try? ParsedURL(lines.removeFirst())

    var headers: [String: String] = [:]
    for (i, line) in lines.enumerated() {
        if let r = ContentRange.parse(line) {
            if let start = r.start, let end = r.end { precondition(0 <= start && start <= end, "range \(start)-\(end)") }
            precondition((r.start == nil) == (r.end == nil), "half a range")
        }
        let next = i + 1 < lines.count ? lines[i + 1] : nil
        checkName(ArtifactName.choose(contentDisposition: line, url: url, contentType: next), chosen: true)
        checkName(ArtifactName.sanitize(line), chosen: false)
        _ = ArtifactName.filename(fromDisposition: line)
        _ = ArtifactName.extensionFor(contentType: line)
        _ = HTTPDate.parse(line)
        for name in ["retry-after", "ratelimit-reset", "x-ratelimit-reset"] {
            checkWait(response(429, [name: line]))
            checkWait(response(503, [name: line]))
        }
        // As Transfer.receiveHeader files a header line.
        if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingWhitespace()
        }
    }
    _ = ContentRange.parse(headers["content-range"])
    checkName(ArtifactName.choose(contentDisposition: headers["content-disposition"], url: url, contentType: headers["content-type"]), chosen: true)
    checkWait(response(429, headers))
    return 0
}

func response(_ status: Int, _ headers: [String: String]) -> HTTPResponse {
    HTTPResponse(status: status, headers: headers, body: [], bytesWritten: 0, bodyTooLarge: false, seconds: 0)
}

func checkWait(_ r: HTTPResponse) {
    if let wait = r.retryAfter(now: now) {
        precondition(wait.isFinite && wait >= 0, "retryAfter gave \(wait)")
    }
}

/// A published file's name: one safe path component.
func checkName(_ name: String, chosen: Bool) {
    let b = Array(name.utf8)
    precondition(b.count <= 255, "name of \(b.count) bytes")
    precondition(b.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
        || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }, "unsafe name \(name.debugDescription)")
    precondition(!name.hasPrefix("."), "dot name \(name.debugDescription)")
    precondition(name != "job.json", "job.json")
    if chosen { precondition(!b.isEmpty, "empty name") }
}

