import JFZlib
import Glibc

/// Streaming gzip/zlib/raw-deflate decompression with the rules the field
/// learned: the stream must reach Z_STREAM_END with a correct trailer (a
/// truncated file is an error, not a short result), every member of a
/// multi-member gzip is decoded, and output is bounded (size and ratio).
public final class InflateStream {
    public enum Format: Sendable, Equatable { case gzip, zlib, deflate }

    private var stream = z_stream()
    private let output: UnsafeMutablePointer<UInt8>
    static let chunk = 256 * 1024
    public let format: Format
    public let limit: Int64
    /// Output may be at most this many times the input (once past `ratioFloor`).
    public let maxRatio: Double
    static let ratioFloor: Int64 = 64 << 20
    public private(set) var consumed: Int64 = 0
    public private(set) var produced: Int64 = 0
    /// The last member read so far reached Z_STREAM_END with its checksum.
    private var ended = false

    public init(format: Format, limit: Int64, maxRatio: Double = .infinity) throws(JobFetchError) {
        self.format = format
        self.limit = limit
        self.maxRatio = maxRatio
        output = .allocate(capacity: Self.chunk)
        // 15 + 32: zlib or gzip, detected from the header; -15: raw deflate.
        guard jf_inflate_init2(&stream, format == .deflate ? -15 : 15 + 32) == Z_OK else {
            output.deallocate()
            throw JobFetchError("zlib could not start")
        }
    }

    deinit {
        inflateEnd(&stream)
        output.deallocate()
    }

    /// Recognises compressed data by its first bytes, not by its name.
    public static func sniff(_ head: UnsafeRawBufferPointer) -> Format? {
        guard head.count >= 2 else { return nil }
        if head[0] == 0x1F && head[1] == 0x8B { return .gzip }
        // zlib: CM=8, window ≤ 32K, header checksum divisible by 31.
        if head[0] & 0x0F == 8 && head[0] >> 4 <= 7 && (UInt16(head[0]) << 8 | UInt16(head[1])) % 31 == 0 { return .zlib }
        return nil
    }

    /// Decodes `input`, handing each piece of output to `sink`.
    public func feed(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws(JobFetchError) -> Void) throws(JobFetchError) {
        guard let base = input.baseAddress, input.count > 0 else { return }
        consumed += Int64(input.count)
        var pos = 0
        while pos < input.count {
            if ended {
                // Another gzip member follows (a zlib or raw stream has only one).
                guard format == .gzip else { throw JobFetchError("compressed data is corrupt: bytes follow the end of the stream") }
                inflateReset(&stream)
                ended = false
            }
            stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)) + pos
            stream.avail_in = UInt32(input.count - pos)
            var status: Int32
            repeat {
                stream.next_out = output
                stream.avail_out = UInt32(Self.chunk)
                status = JFZlib.inflate(&stream, Z_NO_FLUSH)
                guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                    let msg = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw JobFetchError("compressed data is corrupt: \(msg)")
                }
                let n = Self.chunk - Int(stream.avail_out)
                if n > 0 {
                    produced += Int64(n)
                    guard produced <= limit else {
                        throw JobFetchError("decompressed output exceeds max_output_size (\(Units.formatBytes(limit))): a decompression bomb?")
                    }
                    if produced > Self.ratioFloor && Double(produced) > maxRatio * Double(consumed) {
                        throw JobFetchError("decompressed output is more than \(Int(maxRatio)) times its input: a decompression bomb?")
                    }
                    try sink(UnsafeRawBufferPointer(start: output, count: n))
                }
            } while stream.avail_out == 0 && status == Z_OK
            pos = input.count - Int(stream.avail_in)
            if status == Z_STREAM_END { ended = true } else if stream.avail_in > 0 && status == Z_BUF_ERROR {
                throw JobFetchError("compressed data is corrupt: zlib made no progress")
            }
        }
    }

    /// The input is over: it must have ended with a whole stream.
    public func finish() throws(JobFetchError) {
        guard ended else { throw JobFetchError("compressed data is truncated: the stream ends before its end marker and checksum") }
    }
}
