import JobFetchCore

/// What is known about a `.part` file, kept beside it as `<part>.json`:
/// where it came from (without secrets), the validators that let a resume
/// ask for "the same object, from byte N", and how much of it is known to
/// be on disk. A resume starts from `synced`, never from the file's end,
/// which after a power cut may be garbage.
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

    public init(url: String, etag: String?, lastModified: String?, length: Int64?, synced: Int64, encoding: String?) {
        self.url = url
        self.etag = etag
        self.lastModified = lastModified
        self.length = length
        self.synced = synced
        self.encoding = encoding
    }

    public static func path(for part: String) -> String { part + ".json" }

    /// The `If-Range` value: a strong ETag, else `Last-Modified`; nil when
    /// the object cannot be identified (then there is no resume).
    public var validator: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return lastModified
    }

    public var isResumable: Bool { encoding == nil && validator != nil && synced > 0 }

    public var json: JSONValue {
        .object([
            JSONMember("url", .string(url)),
            JSONMember("etag", etag.map { .string($0) } ?? .null),
            JSONMember("last_modified", lastModified.map { .string($0) } ?? .null),
            JSONMember("length", length.map { .int($0) } ?? .null),
            JSONMember("synced", .int(synced)),
            JSONMember("encoding", encoding.map { .string($0) } ?? .null),
        ])
    }

    public init?(json v: JSONValue) {
        guard let url = v["url"]?.scalarText, let synced = v["synced"]?.doubleValue.flatMap({ Int64(exactly: $0) }), synced >= 0 else { return nil }
        self.init(url: url, etag: v["etag"]?.scalarText, lastModified: v["last_modified"]?.scalarText,
                  length: v["length"]?.doubleValue.flatMap { Int64(exactly: $0) }, synced: synced, encoding: v["encoding"]?.scalarText)
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
