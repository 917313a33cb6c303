// When a presigned result URL expires (PresignedURL.expiry reads the URL's
// own query: X-Amz-Date + X-Amz-Expires, X-Goog-*, Expires, se) and the
// RFC 3339 times APIs write (Timestamp.parse). Whatever a URL or a server
// says, the job machine logs the time with Timestamp.iso8601 (an expiry
// that has passed, a next-poll time): it must not trap.
@testable import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzTimestamp_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzTimestamp_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)

    if let expiry = PresignedURL.expiry(text) {
        precondition(!expiry.isNaN, "expiry is NaN")
        _ = Timestamp.iso8601(expiry)
    }
    if let t = Timestamp.parse(text) {
        precondition(t.isFinite, "Timestamp.parse gave \(t)")
        let formatted = Timestamp.iso8601(t)
        // A time from 1970 to the end of 9999 formats to text that parses
        // back to the same time (to the millisecond).
        if t >= 0, t < 253_402_300_800 {
            guard let back = Timestamp.parse(formatted) else { preconditionFailure("iso8601 gave \(formatted), which does not parse") }
            precondition(abs(back - t) < 0.002, "\(text.debugDescription) -> \(t) -> \(formatted) -> \(back)")
        }
    }
    // A next-poll field is a number or a string (StatusReader.time).
    for v in [JSONValue.string(text), .number(text)] {
        if let t = StatusReader.time(v) { _ = Timestamp.iso8601(t) }
    }
    return 0
}
