import COpenSSL
import Glibc
import JobFetchCore

/// An incremental sha256 (libcrypto's EVP interface, which uses the CPU's
/// SHA extensions).
public final class SHA256Stream {
    private let ctx: OpaquePointer
    public private(set) var bytes: Int64 = 0

    public init() throws(SystemError) {
        guard let c = EVP_MD_CTX_new() else { throw SystemError("EVP_MD_CTX_new", "sha256", errno: ENOMEM) }
        ctx = c
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard data.count > 0 else { return }
        EVP_DigestUpdate(ctx, data.baseAddress, data.count)
        bytes += Int64(data.count)
    }

    /// The digest as lowercase hex.
    public func finish() -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &digest, &len)
        return digest.prefix(Int(len)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// sha256 and length of a file, read in large blocks.
public enum FileDigest {
    public static func sha256(_ path: String) throws(SystemError) -> (hex: String, bytes: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        let hash = try SHA256Stream()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try Syscall.retrying("read", path) { read(fd, buffer.baseAddress, buffer.count) }
            if n == 0 { break }
            hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return (hash.finish(), hash.bytes)
    }
}

/// HMAC-SHA256 (RFC 2104) over the sha256 above: a webhook's signature.
public enum HMACSHA256 {
    /// The MAC of `message` under `key`, as lowercase hex.
    public static func hex(key: [UInt8], message: [UInt8]) throws(SystemError) -> String {
        let block = 64
        var k = key
        if k.count > block {
            let h = try SHA256Stream()
            k.withUnsafeBytes { h.update($0) }
            k = bytes(fromHex: h.finish())
        }
        k += [UInt8](repeating: 0, count: block - k.count)
        let inner = try SHA256Stream()
        (k.map { $0 ^ 0x36 } + message).withUnsafeBytes { inner.update($0) }
        let outer = try SHA256Stream()
        (k.map { $0 ^ 0x5c } + bytes(fromHex: inner.finish())).withUnsafeBytes { outer.update($0) }
        return outer.finish()
    }

    static func bytes(fromHex hex: String) -> [UInt8] {
        let u = Array(hex.utf8)
        func nibble(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : c - 0x61 + 10 }
        return stride(from: 0, to: u.count - 1, by: 2).map { nibble(u[$0]) << 4 | nibble(u[$0 + 1]) }
    }
}
