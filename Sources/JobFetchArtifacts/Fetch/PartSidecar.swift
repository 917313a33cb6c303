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
    /// A segmented download: every segment's range and how far it is known
    /// to be on disk (`synced` above is then unused); nil: one stream from 0.
    public var segments: [Segment]?
    /// The first answer's `Content-Disposition` and `Content-Type`, which
    /// name the artifact: a resumed answer may not repeat them (a 416 for a
    /// part that was whole when the daemon died carries neither).
    public var disposition: String?
    public var contentType: String?

    /// Bytes `start..<end` of the object, fetched over a connection of their
    /// own; `start..<synced` are known to be on disk.
    public struct Segment: Equatable, Sendable {
        public var start: Int64
        public var end: Int64
        public var synced: Int64

        public init(start: Int64, end: Int64, synced: Int64) {
            self.start = start
            self.end = end
            self.synced = synced
        }
    }

    public init(url: String, etag: String?, lastModified: String?, length: Int64?, synced: Int64, encoding: String?,
                boot: String? = PartSidecar.currentBoot, segments: [Segment]? = nil, disposition: String? = nil, contentType: String? = nil) {
        self.segments = segments
        self.disposition = disposition
        self.contentType = contentType
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
        /// A segmented part: where each of `sidecar.segments` continues (its
        /// `end` when it is whole); nil for one stream.
        public var segmentFrom: [Int64]?

        public init(sidecar: PartSidecar, offset: Int64, segmentFrom: [Int64]? = nil) {
            self.sidecar = sidecar
            self.offset = offset
            self.segmentFrom = segmentFrom
        }
    }

    /// Where a download of this part resumes, given the part's length, the
    /// boot now and (segments) the progress file; nil when it cannot (no
    /// validator, an encoded body, nothing to keep). One stream, on the boot
    /// that wrote the bytes: from the part's end (a kill -9, a crash or the
    /// OOM killer lose nothing the daemon wrote); after a reboot, from the
    /// last durable checkpoint. Segments: see `resumeSegments`.
    public func resume(partSize: Int64, boot now: String?, written: [Int64: Int64] = [:]) -> Resume? {
        if let segments { return resumeSegments(segments, partSize: partSize, boot: now, written: written) }
        var s = self
        s.synced = min(synced, partSize)
        let offset = now != nil && boot == now ? partSize : s.synced
        guard encoding == nil, validator != nil, offset > 0 else { return nil }
        return Resume(sidecar: s, offset: offset)
    }

    /// A segmented part: on the boot that wrote it, each segment continues
    /// from what the progress file says was written (`written`, by segment
    /// start), else from its checkpoint; never past the file. When every
    /// segment is whole, the part is one stream again, resumed at its end.
    func resumeSegments(_ segments: [Segment], partSize: Int64, boot now: String?, written: [Int64: Int64]) -> Resume? {
        guard encoding == nil, validator != nil, let length, segments.first?.start == 0, segments.last?.end == length,
              zip(segments, segments.dropFirst()).allSatisfy({ $0.end == $1.start }),
              segments.allSatisfy({ $0.start < $0.end && ($0.start...$0.end).contains($0.synced) }) else { return nil }
        let sameBoot = now != nil && boot == now
        var s = self
        var from: [Int64] = []
        for (i, seg) in segments.enumerated() {
            var f = seg.synced
            if sameBoot, let w = written[seg.start], w > f { f = min(w, seg.end) }
            f = max(seg.start, min(f, partSize))
            s.segments?[i].synced = min(seg.synced, f)
            from.append(f)
        }
        if zip(segments, from).allSatisfy({ $0.end == $1 }) {
            // Whole: one stream again, whose next request finds nothing left (416).
            s.synced = Self.durablePrefix(s.segments ?? [])
            s.segments = nil
            return Resume(sidecar: s, offset: length)
        }
        guard zip(segments, from).contains(where: { $0.start < $1 }) else { return nil }
        return Resume(sidecar: s, offset: from[0], segmentFrom: from)
    }

    /// How an object of `length` bytes is split over `count` connections,
    /// the first of which has received bytes up to `from` (nil: one stream
    /// below `minSize`, for one connection, or when less than two pieces of
    /// 1 MiB are left). Segment 0 is the first connection's: up to a piece
    /// past `from`. The rest are pieces of `piece` bytes (nil: equal parts,
    /// one per connection), handed out in order, so the contiguous prefix
    /// grows at the connections' sum. The last round shrinks as it goes
    /// (each piece 1/(2 × count) of what is left, down to a sixteenth of a
    /// piece or 1 MiB, in equal shares at the end), so whichever connection
    /// frees up last has little left to fetch alone and the connections
    /// finish together. Boundaries fall on 64 KiB; at most `maxPieces` pieces.
    public static func layout(length: Int64, count: Int, minSize: Int64, piece: Int64? = nil, from: Int64 = 0) -> [Segment]? {
        let up: (Int64) -> Int64 = { ($0 + 0xFFFF) & ~0xFFFF }
        let mib: Int64 = 1 << 20
        let n = Int64(count)
        guard n > 1, length >= minSize, from >= 0, from < length else { return nil }
        let equal = max(mib, ((length - from) / n) & ~0xFFFF)
        // Pieces: no larger than equal parts; few enough that the last round's
        // (2n × ln 8 shrinking ones, then under 2n equal shares: under 8n) stay within maxPieces.
        let size = piece.map { min(equal, max(mib, up($0), up((length - from) / max(1, Int64(maxPieces) - 8 * n - 1)))) } ?? equal
        var ends = [min(length, up(from) + size)]
        guard length - ends[0] >= mib else { return nil }
        // Whole pieces while more than a round is left (equal parts: to the end);
        // a tail under 1 MiB joins the piece before it.
        while let last = ends.last, length - last > (piece == nil ? 0 : n * size) {
            ends.append(length - last - size < mib ? length : last + size)
        }
        // The last round: pieces of 1/(2n) of what is left, then equal shares of at least `smallest`.
        if let last = ends.last, last < length {
            let smallest = max(mib, up(size / 16))
            while let last = ends.last, length - last >= 2 * n * smallest {
                ends.append(last + up((length - last) / (2 * n)))
            }
            let tail = ends[ends.count - 1], rest = length - tail, k = max(1, rest / smallest)
            // rest × i / k without the product (which overflows Int64 for objects near 2^62 bytes).
            for i in 1..<k { ends.append(tail + ((rest / k * i + rest % k * i / k) & ~0xFFFF)) }
            ends.append(length)
        }
        var start: Int64 = 0
        return ends.map { end in
            defer { start = end }
            return Segment(start: start, end: end, synced: start)
        }
    }

    /// Pieces of a segmented part (its sidecar and progress file stay small).
    public static let maxPieces = 256

    /// The bytes from 0 known to be on disk: whole segments' ends, then the first unfinished one's checkpoint.
    static func durablePrefix(_ segments: [Segment]) -> Int64 {
        var p: Int64 = 0
        for s in segments {
            guard s.start <= p else { break }
            p = s.synced
            if s.synced < s.end { break }
        }
        return p
    }

    /// The bytes from 0 on disk: `synced`, or a segmented part's durable prefix.
    var durableBytes: Int64 { segments.map { Self.durablePrefix($0) } ?? synced }

    public static func path(for part: String) -> String { part + ".json" }
    /// Where a segmented part's writers note how far each segment was written
    /// (not flushed: it counts on the boot that wrote it).
    public static func progressPath(for part: String) -> String { part + ".progress" }

    /// The progress file's contents: a count and the boot that wrote it,
    /// then `start written` per segment.
    public static func progressRecord(_ segments: [(start: Int64, written: Int64)], boot: String? = currentBoot) -> [UInt8] {
        var text = "\(segments.count)" + (boot.map { " \($0)" } ?? "") + "\n"
        for s in segments { text += "\(s.start) \(s.written)\n" }
        return Array(text.utf8)
    }

    /// How far each segment was written, by its start; empty when the file
    /// is missing or unreadable, or was written on another boot than `boot`
    /// (then only the checkpoints count: after a power cut its figures may
    /// describe bytes that never reached the disk).
    public static func loadProgress(part: String, boot: String? = currentBoot) -> [Int64: Int64] {
        guard let bytes = try? FileIO.readAll(progressPath(for: part), limit: 64 << 10) else { return [:] }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard let head = lines.first?.split(separator: " "), head.count == 2, let count = Int(head[0]), count > 0, lines.count > count,
              let boot, head[1] == boot else { return [:] }
        var out: [Int64: Int64] = [:]
        for line in lines[1...count] {
            let f = line.split(separator: " ")
            guard f.count == 2, let start = Int64(f[0]), let w = Int64(f[1]), start >= 0, w >= start else { return [:] }
            out[start] = w
        }
        return out
    }

    /// A naming header as the sidecar keeps it: nil when over 2 KiB (a name is
    /// cut to 150 characters anyway; a hostile 100 KB header, escaped, would
    /// make every checkpoint rewrite a megabyte and pass `load`'s limit).
    public static func keepable(_ value: String?) -> String? {
        guard let value, value.utf8.count <= 2048 else { return nil }
        return value
    }

    /// The headers of the first answer that name the artifact, by their lowercased names.
    public var namingHeaders: [String: String] {
        var h: [String: String] = [:]
        h["content-disposition"] = disposition
        h["content-type"] = contentType
        return h
    }

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
            // A segmented part is sparse: a reader that knows no segments (an older
            // daemon) sees no boot and the durable prefix, and resumes from there.
            JSONMember("synced", .int(durableBytes)),
            JSONMember("encoding", encoding.map { .string($0) } ?? .null),
            JSONMember(segments == nil ? "boot" : "segments_boot", boot.map { .string($0) } ?? .null),
            JSONMember("content_disposition", disposition.map { .string($0) } ?? .null),
            JSONMember("content_type", contentType.map { .string($0) } ?? .null),
        ] + (segments.map { list in
            [JSONMember("segments", .array(list.map { .array([.int($0.start), .int($0.end), .int($0.synced)]) }))]
        } ?? []))
    }

    public init?(json v: JSONValue) {
        guard let url = v["url"]?.scalarText, let synced = v["synced"]?.doubleValue.flatMap({ Int64(exactly: $0) }), synced >= 0 else { return nil }
        self.init(url: url, etag: v["etag"]?.scalarText, lastModified: v["last_modified"]?.scalarText,
                  length: v["length"]?.doubleValue.flatMap { Int64(exactly: $0) }, synced: synced, encoding: v["encoding"]?.scalarText,
                  boot: v["boot"]?.scalarText, disposition: v["content_disposition"]?.scalarText, contentType: v["content_type"]?.scalarText)
        if let list = v["segments"] {
            boot = v["segments_boot"]?.scalarText
            self.synced = 0
            guard case .array(let items) = list, !items.isEmpty, items.count <= 4 * Self.maxPieces else { return nil }
            var segs: [Segment] = []
            for item in items {
                guard case .array(let f) = item, f.count == 3,
                      let a = f[0].doubleValue.flatMap({ Int64(exactly: $0) }), let b = f[1].doubleValue.flatMap({ Int64(exactly: $0) }),
                      let c = f[2].doubleValue.flatMap({ Int64(exactly: $0) }) else { return nil }
                segs.append(Segment(start: a, end: b, synced: c))
            }
            segments = segs
        }
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

    /// Removes a part and its sidecar (a fresh start); the part, which may
    /// be large, through `discarder` when there is one.
    public static func discard(part: String, using discarder: Discarder? = nil) {
        if let discarder { discarder.discard(part) } else { FileIO.unlinkIfPresent(part) }
        FileIO.unlinkIfPresent(path(for: part))
        FileIO.unlinkIfPresent(progressPath(for: part))
    }
}
