import CZlib
import Glibc

/// Streaming gzip/zlib decompression of a file into another, with the rules
/// the field learned: the stream must reach Z_STREAM_END with a correct
/// trailer (a truncated file is an error, not a short result), every member
/// of a multi-member gzip is decoded, and output is bounded.
public enum Inflater {
    public enum Format: Sendable { case gzip, zlib }

    /// Recognises compressed data by its first bytes, not by its name.
    public static func sniff(_ path: String) -> Format? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 2)
        guard read(fd, &head, 2) == 2 else { return nil }
        if head[0] == 0x1F && head[1] == 0x8B { return .gzip }
        // zlib: CM=8, window ≤ 32K, header checksum divisible by 31.
        if head[0] & 0x0F == 8 && head[0] >> 4 <= 7 && (UInt16(head[0]) << 8 | UInt16(head[1])) % 31 == 0 { return .zlib }
        return nil
    }

    /// Decompresses `source` into `destination` (created, truncated).
    /// Returns the bytes written.
    public static func inflate(_ source: String, to destination: String, limit: Int64) throws(JobFetchError) -> Int64 {
        let inFD = open(source, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw JobFetchError(SystemError("open", source).description) }
        defer { close(inFD) }
        let outFD = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard outFD >= 0 else { throw JobFetchError(SystemError("create", destination).description) }
        defer { close(outFD) }

        var stream = z_stream()
        // 15 + 32: zlib or gzip, detected from the header.
        guard jf_inflate_init2(&stream, 15 + 32) == Z_OK else { throw JobFetchError("zlib could not start") }
        defer { inflateEnd(&stream) }

        let chunk = 256 * 1024
        let input = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        let output = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        defer { input.deallocate(); output.deallocate() }
        var written: Int64 = 0
        var ended = false  // the last member read so far reached Z_STREAM_END
        while true {
            let n = read(inFD, input, chunk)
            if n < 0 { if errno == EINTR { continue }; throw JobFetchError(SystemError("read", source).description) }
            if n == 0 { break }
            var pos = 0
            while pos < n {
                if ended { inflateReset(&stream); ended = false }  // another gzip member follows
                stream.next_in = input + pos
                stream.avail_in = UInt32(n - pos)
                var status: Int32
                repeat {
                    stream.next_out = output
                    stream.avail_out = UInt32(chunk)
                    status = CZlib.inflate(&stream, Z_NO_FLUSH)
                    guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                        let msg = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                        throw JobFetchError("compressed data is corrupt: \(msg)")
                    }
                    let produced = chunk - Int(stream.avail_out)
                    if produced > 0 {
                        written += Int64(produced)
                        guard written <= limit else {
                            throw JobFetchError("decompressed output exceeds max_output_size (\(Units.formatBytes(limit)))")
                        }
                        do { try FileIO.writeAll(fd: outFD, UnsafeRawBufferPointer(start: output, count: produced), path: destination) } catch {
                            throw JobFetchError(error.description)
                        }
                    }
                } while stream.avail_out == 0 && status == Z_OK
                pos = n - Int(stream.avail_in)
                if status == Z_STREAM_END { ended = true } else if stream.avail_in > 0 && status == Z_BUF_ERROR {
                    throw JobFetchError("compressed data is corrupt: zlib made no progress")
                }
            }
        }
        guard ended else { throw JobFetchError("compressed data is truncated: the stream ends before its end marker and checksum") }
        return written
    }
}
