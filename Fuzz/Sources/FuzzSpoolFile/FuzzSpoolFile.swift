// SpoolFile.parse: anyone in the spool's group drops files there, so both
// the file's name (the ID of an empty file) and its bytes are untrusted.
// Input: byte 0 = length of the name, then the name, then the contents.
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzSpoolFile_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzSpoolFile_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let first = input.first else { return 0 }
    let rest = input.dropFirst()
    let nameLength = min(Int(first), rest.count)
    let name = String(decoding: rest.prefix(nameLength), as: UTF8.self)
    let bytes = Array(rest.dropFirst(nameLength))

    let contents = SpoolFile.parse(name: name, bytes: bytes)
    precondition(!contents.ids.isEmpty || !contents.problems.isEmpty, "a spool file gave neither an ID nor a problem")
    precondition(Set(contents.ids).count == contents.ids.count, "duplicate IDs")
    for id in contents.ids { checkSafe(id) }
    // What jobfetchctl writes, the daemon reads back as the same IDs.
    if !contents.ids.isEmpty {
        let again = SpoolFile.parse(name: "x", bytes: SpoolFile.render(contents.ids))
        precondition(again.ids == contents.ids && again.problems.isEmpty, "render/parse round trip changed the IDs")
    }
    _ = contents.problems.map(\.description)

    // JobID on the whole input as text, and on the name.
    for text in [String(decoding: input, as: UTF8.self), name] {
        let problem = JobID.problem(with: text)
        do {
            let id = try JobID(text)
            precondition(problem == nil, "JobID accepted what problem(with:) refuses")
            checkSafe(id)
        } catch {
            precondition(problem != nil, "JobID refused what problem(with:) accepts")
        }
    }
    return 0
}

/// An ID is used as a path component and inside URL paths without escaping.
func checkSafe(_ id: JobID) {
    let b = Array(id.rawValue.utf8)
    precondition(!b.isEmpty && b.count <= JobID.maxLength, "ID length \(b.count)")
    precondition(b[0] != UInt8(ascii: "."), "ID starts with a dot")
    precondition(!b.contains(where: { $0 == UInt8(ascii: "/") || $0 == 0 || $0 < 0x21 || $0 > 0x7E || $0 == UInt8(ascii: "%")
        || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }), "ID \(id.rawValue) has an unsafe byte")
}
