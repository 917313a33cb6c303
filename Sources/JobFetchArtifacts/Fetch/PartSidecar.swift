import JobFetchCore

/// What is known about a `.part` file, kept beside it as `<part>.json`:
/// where it came from (without secrets), the validators that let a resume
/// ask for "the same object, from byte N", and how much of it is known to
/// be on disk, and the boot it was written in. After the daemon alone died
/// (same boot) a resume starts from the file's end: the page cache holds
/// every byte the daemon wrote. After a reboot it starts from `synced`,
/// never from the file's end, which after a power cut may be garbage.
public struct PartSidecar: Equatable, Sendable {
    /// The URL without its query string (no signatures).
    public var url: String
    public var etag: String?
    public var lastModified: String?
    /// The whole object's length, when the server said.
    public var length: Int64?
    /// Bytes from the start that were flushed to disk when this was written.
    public var synced: Int64
    /// The response's `Content-Encoding`; a body that had one is never resumed.
    public var encoding: String?
    /// The boot (`/proc/sys/kernel/random/boot_id`) the sidecar was written
    /// in, with the bytes it describes; nil when unknown.
    public var boot: String?

    public init(url: String, etag: String?, lastModified: String?, length: Int64?, synced: Int64, encoding: String?,
                boot: String? = PartSidecar.currentBoot) {
        self.url = url
        self.etag = etag
        self.lastModified = lastModified
        self.length = length
        self.synced = synced
        self.encoding = encoding
        self.boot = boot
    }

    /// This boot's identity, read once; nil if the kernel does not say.
    public static let currentBoot: String? = {
        guard let bytes = try? FileIO.readAll("/proc/sys/kernel/random/boot_id", limit: 64) else { return nil }
        let id = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        return id.isEmpty ? nil : id
    }()

    /// How a download continues a part: the sidecar, with `synced` no more
    /// than the file holds (what is known to be durable), and the offset the
    /// request asks for (`Range: bytes=offset-`).
    public struct Resume: Equatable, Sendable {
        public var sidecar: PartSidecar
        public var offset: Int64
    }

    /// Where a download of this part resumes, given the part's length and
    /// the boot now; nil when it cannot (no validator, an encoded body,
    /// nothing to keep). On the boot that wrote the bytes, from the part's
    /// end: a kill -9, a crash or the OOM killer lose nothing the daemon
    /// wrote. After a reboot, from the last durable checkpoint.
    public func resume(partSize: Int64, boot now: String?) -> Resume? {
        var s = self
        s.synced = min(synced, partSize)
        let offset = now != nil && boot == now ? partSize : s.synced
        guard encoding == nil, validator != nil, offset > 0 else { return nil }
        return Resume(sidecar: s, offset: offset)
    }

    public static func path(for part: String) -> String { part + ".json" }

    /// The `If-Range` value: a strong ETag, else `Last-Modified`; nil when
    /// the object cannot be identified (then there is no resume).
    public var validator: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return lastModified
    }

    public var json: JSONValue {
        .object([
            JSONMember("url", .string(url)),
            JSONMember("etag", etag.map { .string($0) } ?? .null),
            JSONMember("last_modified", lastModified.map { .string($0) } ?? .null),
            JSONMember("length", length.map { .int($0) } ?? .null),
            JSONMember("synced", .int(synced)),
            JSONMember("encoding", encoding.map { .string($0) } ?? .null),
            JSONMember("boot", boot.map { .string($0) } ?? .null),
        ])
    }

    public init?(json v: JSONValue) {
        guard let url = v["url"]?.scalarText, let synced = v["synced"]?.doubleValue.flatMap({ Int64(exactly: $0) }), synced >= 0 else { return nil }
        self.init(url: url, etag: v["etag"]?.scalarText, lastModified: v["last_modified"]?.scalarText,
                  length: v["length"]?.doubleValue.flatMap { Int64(exactly: $0) }, synced: synced, encoding: v["encoding"]?.scalarText,
                  boot: v["boot"]?.scalarText)
    }

    /// The sidecar of `part`, if there is a readable one.
    public static func load(part: String) -> PartSidecar? {
        guard let bytes = try? FileIO.readAll(path(for: part), limit: 1 << 20), let v = try? JSONParser.parse(bytes) else { return nil }
        return PartSidecar(json: v)
    }

    /// Writes it durably (temp file, fsync, rename, directory fsync).
    public func save(part: String) throws(SystemError) {
        try FileIO.writeAtomically(Self.path(for: part), Array((JSONWriter.string(json) + "\n").utf8))
    }

    /// Removes a part and its sidecar (a fresh start).
    public static func discard(part: String) {
        FileIO.unlinkIfPresent(part)
        FileIO.unlinkIfPresent(path(for: part))
    }
}
