import COpenSSL
import Glibc

/// sha256 and length of a file, read in large blocks.
public enum FileDigest {
    public static func sha256(_ path: String) throws(SystemError) -> (hex: String, bytes: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        guard let ctx = EVP_MD_CTX_new() else { throw SystemError("EVP_MD_CTX_new", path, errno: ENOMEM) }
        defer { EVP_MD_CTX_free(ctx) }
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path) }
            if n == 0 { break }
            buffer.withUnsafeBytes { _ = EVP_DigestUpdate(ctx, $0.baseAddress, n) }
            total += Int64(n)
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &digest, &len)
        return (digest.prefix(Int(len)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(), total)
    }
}
