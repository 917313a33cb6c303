// InflateStream (ISA-L igzip) over a downloaded body, fed in pieces as the
// network delivers it. Input: byte 0 picks the format (gzip, zlib, raw
// deflate, or sniffed from the data as the publisher does); byte 1 says how
// many of the following bytes are piece sizes (0: the whole body at once);
// the rest is the compressed body, fed in pieces of those sizes, cycling.
// Output is bounded (1 MiB): errors are fine, crashes and hangs are not.
import JobFetchArtifacts
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzInflate_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzInflate_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

let outputLimit: Int64 = 1 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard input.count >= 2 else { return 0 }
    let sizeCount = min(Int(input[1]) % 16, input.count - 2)
    let sizes = input[2..<(2 + sizeCount)].map { Int($0) + 1 }
    let body = UnsafeRawBufferPointer(rebasing: input[(2 + sizeCount)...])

    let format: InflateStream.Format
    switch input[0] % 4 {
    case 0: format = .gzip
    case 1: format = .zlib
    case 2: format = .deflate
    default: format = InflateStream.sniff(UnsafeRawBufferPointer(rebasing: body.prefix(16))) ?? .gzip
    }
    let stream: InflateStream
    do { stream = try InflateStream(format: format, limit: outputLimit, maxRatio: 1000) } catch { return 0 }

    var produced: Int64 = 0
    var pos = 0
    var piece = 0
    var failed = false
    do {
        while pos < body.count {
            let n = sizes.isEmpty ? body.count : min(sizes[piece % sizes.count], body.count - pos)
            piece += 1
            try stream.feed(UnsafeRawBufferPointer(rebasing: body[pos..<(pos + n)])) { out in
                precondition(out.count > 0, "an empty piece of output")
                produced += Int64(out.count)
            }
            pos += n
        }
        try stream.finish()
    } catch {
        failed = true
        _ = error.message
    }
    precondition(produced <= outputLimit, "\(produced) bytes out, over the \(outputLimit) limit")
    // The stream counts a piece before refusing it for the limit; otherwise the sink saw all of it.
    precondition(failed ? produced <= stream.produced : produced == stream.produced,
                 "the sink saw \(produced) bytes, the stream counted \(stream.produced)")
    precondition(stream.consumed <= Int64(body.count), "consumed \(stream.consumed) of \(body.count)")
    return 0
}
