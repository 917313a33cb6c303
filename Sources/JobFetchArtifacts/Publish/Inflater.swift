import CIsal
import Glibc
import JobFetchCore

/// Streaming gzip/zlib/raw-deflate decompression with the rules the field
/// learned: the stream must reach its end with a correct trailer (a
/// truncated file is an error, not a short result), every member of a
/// multi-member gzip is decoded, and output is bounded (size and ratio).
///
/// The decoder is ISA-L's igzip (`isal_inflate`): it parses the gzip or zlib
/// header itself and checks the CRC-32 and length (gzip) or Adler-32 (zlib)
/// trailer, and on this machine inflates about three times as fast as zlib,
/// which was the bound of a gzip artifact's download-to-published time.
public final class InflateStream {
    public enum Format: Sendable, Equatable { case gzip, zlib, deflate }

    private let state: UnsafeMutablePointer<inflate_state>
    private let output: UnsafeMutablePointer<UInt8>
    static let chunk = 256 * 1024
    public let format: Format
    public let limit: Int64
    /// Output may be at most this many times the input (once past `ratioFloor`).
    public let maxRatio: Double
    static let ratioFloor: Int64 = 64 << 20
    public private(set) var consumed: Int64 = 0
    public private(set) var produced: Int64 = 0
    /// The last member read so far reached its end and its checksum matched.
    private var ended = false
    /// The member being read (gzip: 1, 2, … in a multi-member file).
    private var members = 1
    /// Zero bytes read after the end (padding).
    private var padding: Int64 = 0

    public init(format: Format, limit: Int64, maxRatio: Double = .infinity) throws(JobFetchError) {
        self.format = format
        self.limit = limit
        self.maxRatio = maxRatio
        output = .allocate(capacity: Self.chunk)
        state = .allocate(capacity: 1)
        start()
    }

    deinit {
        state.deallocate()
        output.deallocate()
    }

    /// A fresh decoder state for the next stream (or gzip member).
    private func start() {
        isal_inflate_init(state)
        switch format {
        case .gzip: state.pointee.crc_flag = UInt32(ISAL_GZIP)
        case .zlib: state.pointee.crc_flag = UInt32(ISAL_ZLIB)
        case .deflate: state.pointee.crc_flag = UInt32(ISAL_DEFLATE)
        }
    }

    /// Bytes of a file's start that `sniff` looks at (fewer for a shorter file).
    public static let sniffBytes = 8
    /// Bytes of a file's start that a zlib stream must decode without an
    /// error before it is taken for one (`decodesCleanly`).
    public static let trialBytes = 4096

    /// Whether `head`, a file's start, decodes as `format` without an error
    /// (its output thrown away); when `head` is the whole file, the stream
    /// must also end in it. Eight bytes of text can still look like a
    /// zlib stream's start (`x^` then a fixed-Huffman block); four kilobytes
    /// of text decode as deflate next to never: a back-reference before the
    /// first byte, an invalid code or block type comes early.
    public static func decodesCleanly(_ head: UnsafeRawBufferPointer, as format: Format, whole: Bool = false) -> Bool {
        guard let trial = try? InflateStream(format: format, limit: .max) else { return false }
        do {
            try trial.feed(head) { (_: UnsafeRawBufferPointer) throws(JobFetchError) in }
            if whole { try trial.finish() }
        } catch { return false }
        return true
    }

    /// Recognises compressed data by its first bytes (up to `sniffBytes`),
    /// not by its name. Two bytes pass zlib's header check by chance about
    /// once in a thousand, and text does (`80,…`, `H,…`, `x^…`), so a zlib
    /// stream must also need no preset dictionary (one that does could not
    /// be decoded anyway) and open with a valid deflate block: not type 3,
    /// and a stored block's length followed by its complement.
    public static func sniff(_ head: UnsafeRawBufferPointer) -> Format? {
        guard head.count >= 2 else { return nil }
        if head[0] == 0x1F && head[1] == 0x8B { return .gzip }
        // zlib: CM=8, window ≤ 32K, header checksum divisible by 31, no FDICT.
        guard head[0] & 0x0F == 8 && head[0] >> 4 <= 7 && (UInt16(head[0]) << 8 | UInt16(head[1])) % 31 == 0,
              head[1] & 0x20 == 0 else { return nil }
        guard head.count >= 3 else { return .zlib }
        let blockType = (head[2] >> 1) & 3
        if blockType == 3 { return nil }
        if blockType == 0 && head.count >= 7 {
            let len = UInt16(head[3]) | UInt16(head[4]) << 8, nlen = UInt16(head[5]) | UInt16(head[6]) << 8
            if len != ~nlen { return nil }
        }
        return .zlib
    }

    static func problem(_ status: Int32) -> String {
        switch status {
        case ISAL_INCORRECT_CHECKSUM: return "its checksum does not match its content"
        case ISAL_INVALID_WRAPPER: return "invalid gzip or zlib header"
        case ISAL_UNSUPPORTED_METHOD: return "unsupported compression method"
        case ISAL_NEED_DICT: return "the stream needs a preset dictionary"
        case ISAL_INVALID_BLOCK: return "invalid deflate block"
        case ISAL_INVALID_SYMBOL: return "invalid deflate symbol"
        case ISAL_INVALID_LOOKBACK: return "invalid back-reference distance"
        default: return "decoder error \(status)"
        }
    }

    /// Decodes `input`, handing each piece of output to `sink`.
    public func feed(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws(JobFetchError) -> Void) throws(JobFetchError) {
        guard let base = input.baseAddress, input.count > 0 else { return }
        consumed += Int64(input.count)
        var pos = 0
        while pos < input.count {
            if ended {
                // Zero bytes after the end (a file padded to a block size, as tape
                // and some archivers leave it) are ignored, as gzip does; nothing may follow them.
                if padding > 0 || input[pos] == 0 {
                    let zeros = input[pos...].prefix { $0 == 0 }.count
                    padding += Int64(zeros)
                    pos += zeros
                    guard pos == input.count else {
                        throw JobFetchError("compressed data is corrupt: \(padding) zero bytes after the end of the stream are followed by other bytes")
                    }
                    break
                }
                // Another gzip member follows (a zlib or raw stream has only one).
                guard format == .gzip else { throw JobFetchError("compressed data is corrupt: bytes follow the end of the stream") }
                start()
                ended = false
                members += 1
            }
            // avail_in is 32 bits: feed at most 1 GiB at a time.
            let span = min(input.count - pos, 1 << 30)
            state.pointee.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)) + pos
            state.pointee.avail_in = UInt32(span)
            repeat {
                state.pointee.next_out = output
                state.pointee.avail_out = UInt32(Self.chunk)
                let status = isal_inflate(state)
                guard status == ISAL_DECOMP_OK else {
                    if status == ISAL_INVALID_WRAPPER && members > 1 {
                        throw JobFetchError("compressed data is corrupt: the bytes after gzip member \(members - 1) are not another gzip member")
                    }
                    throw JobFetchError("compressed data is corrupt: \(Self.problem(status))")
                }
                let n = Self.chunk - Int(state.pointee.avail_out)
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
                // A full output buffer may mean more is waiting inside the decoder.
            } while state.pointee.avail_out == 0 && state.pointee.block_state != ISAL_BLOCK_FINISH
            let left = Int(state.pointee.avail_in)
            ended = state.pointee.block_state == ISAL_BLOCK_FINISH
            // isal_inflate returns only with its input used up, its output
            // full (drained above) or an error: input left over before the
            // end means it stopped, and looping would not move.
            guard ended || left == 0 else { throw JobFetchError("compressed data is corrupt: the decoder stopped early") }
            pos += span - left
        }
    }

    /// The input is over: it must have ended with a whole stream.
    public func finish() throws(JobFetchError) {
        guard ended else { throw JobFetchError("compressed data is truncated: the stream ends before its end marker and checksum") }
    }
}
