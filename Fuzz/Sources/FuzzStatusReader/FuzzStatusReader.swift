// StatusReader.read: a status body straight from the job API, under every
// preset's mapping (byte 0 picks the preset, the rest is the body). Then the
// pure steps the engine takes with a reading: the next-poll time is logged
// with Timestamp.iso8601 (the machine's schedulePoll), a result URL is resolved
// against the status URL, published documents are written with JSONWriter.
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzStatusReader_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzStatusReader_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

let mappings: [StatusMapping] = Preset.names.map { name in
    guard let m = Preset.mapping(named: name) else { preconditionFailure("preset \(name) has no mapping") }
    return m
}
let statusURL: ParsedURL = {
    do { return try ParsedURL("https://api.example.com/v1/jobs/ID?x=1") } catch { preconditionFailure("\(error)") }
}()
/// A fixed "now", as the engine's clock would give (2026-11-22).
let now = 1_795_000_000.0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let first = input.first else { return 0 }
    let mapping = mappings[Int(first) % mappings.count]
    let body = Array(input.dropFirst())

    let reading = StatusReader.read(body, mapping: mapping)
    if let t = reading.notBefore, t > now {
        _ = Timestamp.iso8601(t)   // the machine logs it
    }
    switch reading.observation {
    case .running(let progress, _):
        if let progress { precondition(progress.isFinite, "non-finite progress") }
    case .succeeded(let resultURL, let inline, let warnings):
        if let resultURL, let u = try? ParsedURL(resultURL, relativeTo: statusURL) {
            _ = u.redacted
            _ = u.origin
            _ = u.lastPathSegment
        }
        if let inline { _ = JSONWriter.string(inline, pretty: true) }
        _ = warnings.joined(separator: "; ")
    case .failed(let reason):
        precondition(!reason.isEmpty, "a failure without a reason")
    case .unknown, .malformed:
        break
    }
    for doc in reading.published {
        let name = Array(doc.name.utf8)
        precondition(!name.isEmpty && name[0] != UInt8(ascii: ".") && !name.contains(UInt8(ascii: "/")) && !name.contains(0),
                     "unsafe document name \(doc.name.debugDescription)")
        _ = JSONWriter.string(doc.value, pretty: true)
    }
    if let summary = reading.summary { _ = JSONWriter.string(summary) }
    if let document = reading.document, let pages = mapping.pages {
        // What the machine reads of a page: its items and its total.
        _ = document.value(at: pages.itemsField)
        if let total = pages.totalField { _ = document.value(at: total)?.doubleValue }
    }
    return 0
}
