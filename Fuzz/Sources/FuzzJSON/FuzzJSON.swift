// JSONParser.parse over arbitrary bytes (status documents, sidecars, pages
// come from servers or disk). When a document parses, what JSONWriter makes
// of it (compact and pretty) must parse again to an equal value: job.json and
// the published documents are written with JSONWriter and read back later.
import JobFetchArtifacts
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzJSON_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzJSON_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let value: JSONValue
    do { value = try JSONParser.parse(bytes) } catch {
        precondition(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside the input")
        return 0
    }
    for pretty in [false, true] {
        let text = JSONWriter.string(value, pretty: pretty)
        let again: JSONValue
        do { again = try JSONParser.parse(text) } catch {
            preconditionFailure("JSONWriter output (pretty: \(pretty)) does not parse: \(error)\n\(text)")
        }
        precondition(again == value, "JSONWriter output (pretty: \(pretty)) parses to a different value:\n\(text)")
    }
    // The accessors the status reader uses on every value.
    func walk(_ v: JSONValue, _ depth: Int) {
        _ = v.scalarText
        _ = v.doubleValue
        switch v {
        case .array(let items): for i in items { walk(i, depth + 1) }
        case .object(let members): for m in members { _ = v[m.key]; walk(m.value, depth + 1) }
        default: break
        }
    }
    walk(value, 0)
    // A part file's sidecar is JSON read back from disk.
    if let sidecar = PartSidecar(json: value) {
        precondition(sidecar.synced >= 0, "negative synced")
        _ = JSONWriter.string(sidecar.json)
    }
    return 0
}
