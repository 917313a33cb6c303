import Glibc

/// A config value that may read secrets from files (`${file:PATH}`,
/// `${credential:NAME}`). It is resolved at each use, so a rotated token is
/// picked up without a restart; `${env:NAME}` is fixed at load, as the
/// environment of a running process is.
public struct SecretTemplate: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case file(String)
    }
    public var parts: [Part]

    public init(parts: [Part]) { self.parts = parts }

    public var readsFiles: Bool { parts.contains { if case .file = $0 { return true } else { return false } } }

    /// The value with every file read now. Throws naming the file, never its contents.
    public func resolve(_ cache: SecretFileCache) throws(JobFetchError) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .literal(let s): out += s
            case .file(let path): out += try cache.read(path)
            }
        }
        return out
    }
}

/// Reads secret files and re-reads one only when its identity or mtime
/// changes, so each request costs a stat, not a read.
public final class SecretFileCache {
    private struct Entry { var dev: UInt64; var ino: UInt64; var mtime: timespec; var size: Int; var value: String }
    private var entries: [String: Entry] = [:]
    public static let maxSize = 64 * 1024

    public init() {}

    public func read(_ path: String) throws(JobFetchError) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw JobFetchError("cannot read secret file \(path): \(String(cString: strerror(errno)))")
        }
        if let e = entries[path], e.dev == UInt64(st.st_dev), e.ino == UInt64(st.st_ino), e.size == Int(st.st_size),
           e.mtime.tv_sec == st.st_mtim.tv_sec, e.mtime.tv_nsec == st.st_mtim.tv_nsec {
            return e.value
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw JobFetchError("secret file \(path) is not a regular file") }
        guard Int(st.st_size) <= Self.maxSize else { throw JobFetchError("secret file \(path) is larger than 64 KiB") }
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path, limit: Self.maxSize) } catch {
            throw JobFetchError("cannot read secret file \(path): \(error)")
        }
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasSuffix("\r\n") || text.hasSuffix("\n") { text.removeLast() }
        if text.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw JobFetchError("secret file \(path) holds more than one line")
        }
        entries[path] = Entry(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino), mtime: st.st_mtim, size: Int(st.st_size), value: text)
        return text
    }
}
