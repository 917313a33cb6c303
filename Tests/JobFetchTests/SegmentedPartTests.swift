import Glibc
import Synchronization
import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore
@testable import JobFetchTransfer

/// The segmented part without a network: how an object is split, how each
/// segment resumes, how connections hand segments over, and how the
/// transfer layer makes one answer of several.
@Suite struct SegmentedPartTests {
    typealias Segment = PartSidecar.Segment

    @Test func anObjectIsSplitOnlyWhenLargeEnoughAndOn64KiBBoundaries() throws {
        let segs = try #require(PartSidecar.layout(length: 12 << 20 | 12345, count: 4, minSize: 4 << 20))
        #expect(segs.count == 4 && segs[0].start == 0 && segs.last?.end == 12 << 20 | 12345)
        for (a, b) in zip(segs, segs.dropFirst()) { #expect(a.end == b.start && b.start % 65536 == 0) }
        #expect(segs.allSatisfy { $0.synced == $0.start })
        #expect(PartSidecar.layout(length: 3 << 20, count: 4, minSize: 4 << 20) == nil, "below segment_min_size")
        #expect(PartSidecar.layout(length: 64 << 20, count: 1, minSize: 1) == nil, "segments = 1 turns it off")
        #expect(PartSidecar.layout(length: 3 << 20, count: 8, minSize: 1)?.count == 3, "no segment under 1 MiB")
    }

    /// Pieces after a stream measured slow: its own piece past where it is,
    /// then pieces of the given size; the last round shrinks down to a
    /// sixteenth of a piece so the connections finish together; never more
    /// than `maxPieces`.
    @Test func piecesFollowTheStreamAndShrinkAtTheEnd() throws {
        let mib: Int64 = 1 << 20
        let segs = try #require(PartSidecar.layout(length: 400 * mib + 7, count: 4, minSize: 1, piece: 16 * mib, from: 3 * mib + 5))
        #expect(segs[0].start == 0 && segs[0].end == 3 * mib + 65536 + 16 * mib, "the stream's piece runs on past where it is")
        #expect(segs.last?.end == 400 * mib + 7)
        for (a, b) in zip(segs, segs.dropFirst()) { #expect(a.end == b.start && b.start % 65536 == 0) }
        let sizes = segs.dropFirst().map { $0.end - $0.start }
        // 16 MiB pieces while more than a round (4 × 16 MiB) is left; then
        // each piece an eighth of what is left (never more, but for rounding
        // to 64 KiB), shrinking to equal shares of 1 MiB (a sixteenth of a
        // piece), the last one no larger.
        let regular = sizes.prefix(while: { $0 == 16 * mib }).count
        let endgame = Array(sizes.dropFirst(regular))
        #expect(regular >= 19 && endgame.reduce(0, +) <= 64 * mib && endgame.reduce(0, +) > 48 * mib, "\(sizes)")
        var left = endgame.reduce(0, +)
        for (i, size) in endgame.enumerated() {
            #expect(size >= mib && size <= max(left / 8, mib) + 0x10000, "\(size) of \(left) left: \(sizes)")
            if i > 0 { #expect(size <= endgame[i - 1] + 0x10000, "never growing: \(sizes)") }
            left -= size
        }
        #expect(endgame.suffix(6).allSatisfy { $0 < mib + 0x10000 }, "the last pieces are 1 MiB: \(sizes)")
        for length in [Int64(1) << 40, 300 * mib, 64 * mib] {
            for count in [2, 4, 16] {
                let l = try #require(PartSidecar.layout(length: length, count: count, minSize: 1, piece: mib, from: 0))
                #expect(l.count <= PartSidecar.maxPieces && l.count >= count, "\(length) \(count): \(l.count)")
            }
        }
        // A piece longer than an equal share is cut to it: every connection gets work.
        let big = try #require(PartSidecar.layout(length: 64 * mib, count: 4, minSize: 1, piece: 1 << 40))
        #expect(big.count > 4 && big.allSatisfy { $0.end - $0.start <= 16 * mib })
        #expect(PartSidecar.layout(length: 64 * mib, count: 4, minSize: 1, piece: mib, from: 63 * mib + 1) == nil, "under 1 MiB left")
    }

    /// A stream faster than `segment_below_rate` stays one; a slower one is
    /// split at its first write after the probe.
    @Test func theStreamIsSplitOnlyWhenSlowerThanTheRate() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let chunk = [UInt8](repeating: 5, count: 1 << 20)
        let fast = Part(path: dir + "/f", limit: 1 << 30, resume: nil, split: SplitRule(count: 4, minSize: 1, belowRate: 1, probeSeconds: 0), observer: nil)
        let f = fast.firstWriter()
        #expect(f.begin(status: 200, headers: headers, url: url) && fast.takeQueued().isEmpty)
        #expect(feed(f, chunk) && feed(f, chunk))
        #expect(fast.takeQueued().isEmpty && !fast.isSegmented && PartSidecar.load(part: dir + "/f")?.segments == nil)
        let slow = Part(path: dir + "/s", limit: 1 << 30, resume: nil,
                        split: SplitRule(count: 4, minSize: 1, belowRate: .greatestFiniteMagnitude, probeSeconds: 0), observer: nil)
        let s = slow.firstWriter()
        #expect(s.begin(status: 200, headers: headers, url: url) && slow.takeQueued().isEmpty, "not before its rate is known")
        #expect(feed(s, chunk))
        let helpers = slow.takeQueued()
        #expect(helpers.count == 3 && slow.isSegmented)
        #expect(helpers.allSatisfy { $0.ask!.from >= 1 << 20 }, "after the stream's own piece")
        #expect(PartSidecar.load(part: dir + "/s")?.segments?.first?.end == helpers.first?.ask?.from)
    }

    /// The probe's verdict: nothing before a quarter of it; from then on a
    /// connection under half the rate is split; one nearer the rate is
    /// watched to the end and split only if still under it; one over it
    /// stays one stream.
    @Test func aClearlySlowStreamIsSplitAfterAQuarterOfTheProbe() {
        let rule = SplitRule(count: 4, minSize: 1, belowRate: 100e6, probeSeconds: 0.2)
        #expect(rule.verdict(bytes: 0, elapsed: 0.049) == .watch, "too soon to tell")
        #expect(rule.verdict(bytes: 1_250_000, elapsed: 0.05) == .split, "25 MB/s: clearly slow")
        #expect(rule.verdict(bytes: 3_500_000, elapsed: 0.05) == .watch, "70 MB/s: watched on")
        #expect(rule.verdict(bytes: 13_000_000, elapsed: 0.1) == .watch, "130 MB/s: watched to the end")
        #expect(rule.verdict(bytes: 14_000_000, elapsed: 0.2) == .split, "70 MB/s over the probe")
        #expect(rule.verdict(bytes: 21_000_000, elapsed: 0.2) == .stay, "105 MB/s over the probe")
        let always = SplitRule(count: 4, minSize: 1, belowRate: .greatestFiniteMagnitude, probeSeconds: 0)
        #expect(always.verdict(bytes: 1 << 30, elapsed: 0) == .split)
    }

    /// Pieces are handed out in order: a connection that made its piece whole
    /// (or stepped aside) takes the first free piece; one that failed leaves
    /// its piece to the next connection, from where it stopped, and its place
    /// is not refilled.
    @Test func piecesGoInOrderToTheConnectionThatIsFree() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let mib = 1 << 20
        let part = Part(path: dir + "/p", limit: 1 << 30, resume: nil, split: SplitRule(count: 3, minSize: 1, piece: Int64(mib)), observer: nil)
        let stream = part.firstWriter()
        #expect(stream.begin(status: 200, headers: headers, url: url))
        let h = part.takeQueued()
        #expect(h.map { $0.ask!.from } == [1 << 20, 2 << 20] && h.map { $0.ask!.through! } == [(2 << 20) - 1, (3 << 20) - 1])
        #expect(h[0].begin(status: 206, headers: range(h[0]), url: url) && h[1].begin(status: 206, headers: range(h[1]), url: url))
        #expect(feed(h[0], [UInt8](repeating: 1, count: mib)))
        h[0].finish(durably: false)
        let third = part.takeQueued()
        #expect(third.map { $0.ask!.from } == [3 << 20], "the next piece, to the connection that finished")
        // The stream reaches piece 1, which is whole: it stops, and its place takes piece 4.
        #expect(!feed(stream, [UInt8](repeating: 0, count: mib + 1)) && stream.ended == .rangeDone)
        stream.finish(durably: false)
        #expect(part.takeQueued().map { $0.ask!.from } == [4 << 20])
        #expect(part.prefix == 2 << 20)
        // Piece 2's connection fails after 100 bytes: nobody takes its place.
        #expect(feed(h[1], [UInt8](repeating: 2, count: 100)))
        h[1].finish(durably: false)
        #expect(part.takeQueued().isEmpty)
        // The next connection that is free asks for the rest of piece 2.
        #expect(third[0].begin(status: 206, headers: range(third[0]), url: url) && feed(third[0], [UInt8](repeating: 3, count: mib)))
        third[0].finish(durably: false)
        let retry = part.takeQueued()
        #expect(retry.map { $0.ask!.from } == [(2 << 20) + 100] && retry.first?.ask?.through == (3 << 20) - 1)
        #expect(part.prefix == (2 << 20) + 100)
    }

    func sidecar(_ segs: [Segment], boot: String? = "b1") -> PartSidecar {
        PartSidecar(url: "https://h/x", etag: "\"e\"", lastModified: nil, length: segs.last?.end, synced: 0, encoding: nil, boot: boot, segments: segs)
    }

    /// SPEC "Resume cost" with segments: on the same boot each segment goes on
    /// from what was written, after a reboot from its checkpoint, never past the file.
    @Test func eachSegmentResumesFromWhatWasWrittenOnThisBootElseItsCheckpoint() throws {
        let s = sidecar([Segment(start: 0, end: 100, synced: 40), Segment(start: 100, end: 200, synced: 150), Segment(start: 200, end: 300, synced: 200)])
        let written: [Int64: Int64] = [0: 90, 100: 160, 200: 250]
        #expect(s.resume(partSize: 300, boot: "b1", written: written)?.segmentFrom == [90, 160, 250])
        #expect(s.resume(partSize: 300, boot: "b2", written: written)?.segmentFrom == [40, 150, 200])
        #expect(s.resume(partSize: 300, boot: "b1")?.segmentFrom == [40, 150, 200], "no progress file: the checkpoints")
        // A cut file: nothing past its end counts.
        #expect(s.resume(partSize: 120, boot: "b1", written: written)?.segmentFrom == [90, 120, 200])
        // A progress figure past its segment is bounded by it.
        #expect(s.resume(partSize: 300, boot: "b1", written: [0: 500])?.segmentFrom?.first == 100)
        // Nothing anywhere: a fresh start.
        #expect(sidecar([Segment(start: 0, end: 100, synced: 0), Segment(start: 100, end: 200, synced: 100)]).resume(partSize: 0, boot: "b1") == nil)
        // Every segment whole: one stream again, asked from the end (the server answers 416).
        let whole = try #require(s.resume(partSize: 300, boot: "b1", written: [0: 100, 100: 200, 200: 300]))
        #expect(whole.segmentFrom == nil && whole.offset == 300 && whole.sidecar.segments == nil && whole.sidecar.synced == 40, "the durable prefix")
        // A layout with a gap or past the length is not trusted.
        #expect(sidecar([Segment(start: 0, end: 100, synced: 50), Segment(start: 120, end: 200, synced: 150)]).resume(partSize: 200, boot: "b1") == nil)
        #expect(PartSidecar(json: s.json) == s)
        // What a reader that knows no segments sees: no boot, the durable prefix (segment 0's checkpoint).
        #expect(s.json["boot"] == nil && s.json["synced"]?.doubleValue == 40)
        #expect(PartSidecar(json: try JSONParser.parse(Array(#"{"url":"u","synced":0,"segments":[[0,"x",1]]}"#.utf8))) == nil)
    }

    @Test func theProgressRecordRoundTripsAndGarbageCountsForNothing() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let part = dir + "/a.part"
        try FileIO.writeAtomically(PartSidecar.progressPath(for: part), PartSidecar.progressRecord([(0, 10), (100, 130)], boot: "b1") + Array("9 9\n".utf8))
        #expect(PartSidecar.loadProgress(part: part, boot: "b1") == [0: 10, 100: 130], "a longer stale tail is ignored")
        #expect(PartSidecar.loadProgress(part: part, boot: "b2").isEmpty, "written on another boot: the checkpoints count")
        #expect(PartSidecar.loadProgress(part: part, boot: nil).isEmpty, "the boot unknown: the checkpoints count")
        try write(PartSidecar.progressPath(for: part), "2\n0 10\n100 130\n")
        #expect(PartSidecar.loadProgress(part: part, boot: "b1").isEmpty, "no boot recorded")
        let b = PartSidecar.currentBoot ?? "unknown"
        for garbage in ["", "2 \(b)\n0 10\n", "x \(b)\n0 1\n", "1 \(b)\n5 4\n", "1 \(b)\n-1 4\n", "1 \(b) x\n0 4\n"] {
            try write(PartSidecar.progressPath(for: part), garbage)
            #expect(PartSidecar.loadProgress(part: part).isEmpty, "\(garbage)")
        }
    }

    final class Seen: Sendable {
        let events = Mutex<[String]>([])
        func note(_ e: PartEvent) {
            events.withLock {
                switch e {
                case .fresh: $0.append("fresh")
                case .size(let n): $0.append("size \(n)")
                case .split: $0.append("split")
                }
            }
        }
        var sizes: [Int64] { events.withLock { $0.compactMap { $0.hasPrefix("size ") ? Int64($0.dropFirst(5)) : nil } } }
    }

    let url = try! ParsedURL("https://files.example/x.bin")
    static let length: Int64 = 8 << 20
    let headers = ["etag": "\"e\"", "content-length": "\(length)", "accept-ranges": "bytes"]

    func feed(_ w: PartWriter, _ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { w.write($0) } }
    func range(_ w: PartWriter) -> [String: String] {
        ["etag": "\"e\"", "content-range": "bytes \(w.ask!.from)-\(w.ask!.through!)/\(Self.length)"]
    }

    @Test func aFreshAnswerIsSplitAndTheStreamStopsWhereALiveSegmentBegins() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let seen = Seen()
        let part = Part(path: dir + "/p", limit: 1 << 30, resume: nil, split: SplitRule(count: 4, minSize: 1), observer: { seen.note($0) })
        let stream = part.firstWriter()
        #expect(stream.ask == nil)
        #expect(stream.begin(status: 200, headers: headers, url: url))
        let helpers = part.takeQueued()
        #expect(helpers.count == 3 && part.takeQueued().isEmpty)
        #expect(helpers.map { $0.ask!.from } == [2 << 20, 4 << 20, 6 << 20])
        #expect(helpers.allSatisfy { $0.ask!.validator == "\"e\"" })
        #expect(PartSidecar.load(part: dir + "/p")?.segments?.count == 4)
        // Helper 1 is answered; helper 2 is not (queued behind max_host_connections).
        #expect(helpers[0].begin(status: 206, headers: range(helpers[0]), url: url))
        #expect(feed(helpers[0], [UInt8](repeating: 1, count: 1000)))
        #expect(part.prefix == 0 && part.size == 1000)
        // The stream fills its quarter and stops there: segment 1 is live.
        let quarter = [UInt8](repeating: 0, count: 2 << 20)
        #expect(!feed(stream, quarter + [9]))
        #expect(stream.ended == .rangeDone)
        #expect(part.prefix == 2 << 20 + 1000 && seen.sizes.last == 2 << 20 + 1000)
        // Helper 1 finishes its quarter; helper 2 got nothing yet.
        #expect(feed(helpers[0], [UInt8](repeating: 1, count: (2 << 20) - 1000)))
        #expect(!feed(helpers[0], [7]), "more than its range")
        #expect(part.mismatch?.contains("more than the range") == true)
    }

    /// A fresh part split in four by its stream's 200: the part, the stream, the three helpers.
    func split(_ path: String) -> (Part, PartWriter, [PartWriter]) {
        let part = Part(path: path, limit: 1 << 30, resume: nil, split: SplitRule(count: 4, minSize: 1), observer: nil)
        let stream = part.firstWriter()
        #expect(stream.begin(status: 200, headers: headers, url: url))
        return (part, stream, part.takeQueued())
    }

    @Test func theStreamTakesOverASegmentWhoseConnectionNeverGotAnAnswer() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let (part, stream, helpers) = split(dir + "/p")
        // Helpers 2 and 3 are live; helper 1 never got an answer.
        #expect(helpers[1].begin(status: 206, headers: range(helpers[1]), url: url))
        #expect(helpers[2].begin(status: 206, headers: range(helpers[2]), url: url))
        let data = pseudoRandom(Int(Self.length))
        #expect(feed(stream, Array(data[..<(3 << 20)])), "the stream runs on into segment 1")
        #expect(helpers[0].ended == .superseded, "its segment is the stream's now")
        #expect(!helpers[0].begin(status: 206, headers: range(helpers[0]), url: url))
        #expect(!feed(stream, Array(data[(3 << 20)..<(5 << 20)])) && stream.ended == .rangeDone)
        #expect(feed(helpers[1], Array(data[(4 << 20)..<(6 << 20)])))
        #expect(feed(helpers[2], Array(data[(6 << 20)...])))
        #expect(part.isComplete && part.prefix == Self.length && part.size == Self.length)
        part.finish(durably: true)
        #expect(try FileIO.readAll(dir + "/p", limit: 16 << 20) == data)
        let saved = try #require(PartSidecar.load(part: dir + "/p"))
        #expect(saved.segments?.count == 4 && saved.segments?.allSatisfy { $0.synced == $0.end } == true, "the layout stays")
    }

    @Test func aWholeBodyOnARangeIsLeftToARunningStreamElseTakesTheDownloadOver() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let (part, _, helpers) = split(dir + "/p")
        // The server ignored the range: the stream is running, the helper steps aside.
        #expect(!helpers[0].begin(status: 200, headers: headers, url: url) && helpers[0].ended == .superseded)
        #expect(part.mismatch == nil)

        // A resumed segmented part whose object changed: the first whole body is the download now.
        let seen = Seen()
        let s = sidecar([Segment(start: 0, end: 4 << 20, synced: 1 << 20), Segment(start: 4 << 20, end: Self.length, synced: 5 << 20)], boot: nil)
        let resume = try #require(s.resume(partSize: Self.length, boot: "now"))
        let again = Part(path: dir + "/q", limit: 1 << 30, resume: resume, split: SplitRule(count: 4, minSize: 1), observer: { seen.note($0) })
        let first = again.firstWriter()
        let second = try #require(again.takeQueued().first)
        #expect(first.ask?.from == 1 << 20 && first.ask?.through == (4 << 20) - 1 && second.ask?.from == 5 << 20)
        #expect(second.begin(status: 200, headers: ["etag": "\"new\"", "content-length": "100", "accept-ranges": "bytes"], url: url))
        #expect(seen.events.withLock { $0 } == ["fresh"])
        #expect(!first.begin(status: 200, headers: headers, url: url) && first.ended == .superseded)
        #expect(feed(second, [UInt8](repeating: 3, count: 100)))
        #expect(again.sidecar?.segments == nil && again.sidecar?.etag == "\"new\"", "one stream, never split again")
        #expect(FileIO.size(dir + "/q") == 100)
    }

    /// After a range was answered with the whole object no range is asked
    /// for again: the stream runs through every piece, taking over those
    /// other connections are filling, so the attempt can still complete.
    @Test func afterARangeRefusedTheStreamRunsThroughEveryPiece() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let (part, stream, helpers) = split(dir + "/p")
        let data = pseudoRandom(Int(Self.length))
        #expect(helpers[0].begin(status: 206, headers: range(helpers[0]), url: url))
        #expect(feed(helpers[0], Array(data[(2 << 20)..<(3 << 20)])))
        #expect(!helpers[1].begin(status: 200, headers: headers, url: url) && helpers[1].ended == .superseded)
        helpers[1].finish(durably: false)
        #expect(part.takeQueued().isEmpty, "no range is handed out again")
        #expect(feed(stream, data), "the stream writes through the live piece and the rest")
        #expect(!feed(helpers[0], Array(data[(3 << 20)..<(4 << 20)])) && helpers[0].ended == .superseded)
        #expect(part.isComplete && part.mismatch == nil)
        part.finish(durably: true)
        #expect(try FileIO.readAll(dir + "/p", limit: 16 << 20) == data)
    }

    @Test func a206ForAnotherRangeOrObjectIsAMismatch() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        for (h, why) in [(["etag": "\"e\"", "content-range": "bytes 0-99/\(Self.length)"], "asked for bytes"),
                         (["etag": "\"other\"", "content-range": "bytes \(2 << 20)-\((4 << 20) - 1)/\(Self.length)"], "the ETag changed"),
                         (["etag": "\"e\"", "content-range": "bytes \(2 << 20)-\((4 << 20) - 1)/5"], "the length changed")] {
            let part = Part(path: dir + "/p", limit: 1 << 30, resume: nil, split: SplitRule(count: 4, minSize: 1), observer: nil)
            #expect(part.firstWriter().begin(status: 200, headers: headers, url: url))
            let helper = try #require(part.takeQueued().first)
            #expect(!helper.begin(status: 206, headers: h, url: url))
            #expect(part.mismatch?.contains(why) == true, "\(part.mismatch ?? "nil")")
        }
    }

    final class FakeSink: BodySink {
        var range: RangeRequest?
        var stop: SinkStop?
        var isComplete: Bool
        var isSegmented: Bool
        var carriesStream: Bool
        var expectedLength: Int64?
        init(range: RangeRequest?, stop: SinkStop?, complete: Bool, segmented: Bool = true, carries: Bool = false, length: Int64? = 1000) {
            self.range = range; self.stop = stop; isComplete = complete; isSegmented = segmented; carriesStream = carries
            expectedLength = length
        }
        func begin(status: Int, headers: [String: String], url: ParsedURL) -> Bool { true }
        func write(_ data: UnsafeRawBufferPointer) -> Bool { true }
        func finish(durably: Bool) {}
        var limit: Int64 { 1 << 30 }
        var size: Int64 { 600 }
        var resumedBytes: Int64 { 100 }
        var error: SystemError? { nil }
        var tooLarge: Bool { false }
        var mismatch: String? { nil }
        var namingHeaders: [String: String] = [:]
        var undecodable: Bool { false }
        var aborted: Bool { false }
        func takeConnections() -> [any BodySink] { [] }
    }

    /// A resumed 206 without the naming headers gets the first answer's; its
    /// own are kept. A 416's headers describe its error page: the first
    /// answer's replace them, and are none when it had none.
    @Test func aResumedAnswerIsNamedAsTheFirstAnswerNamedTheObject() {
        let sink = FakeSink(range: RangeRequest(from: 100, through: nil, validator: "\"e\""), stop: nil, complete: false,
                            segmented: false, carries: true, length: 600)
        let disposition = "attachment; filename=\"rows\""
        sink.namingHeaders = ["content-disposition": disposition, "content-type": "text/csv"]
        let resumed = CurlMulti.merge([HTTPResponse(status: 206, headers: ["content-type": "application/x-rows"], body: [])], sinks: [sink])
        #expect(resumed.headers["content-disposition"] == disposition && resumed.headers["content-type"] == "application/x-rows")
        let past = HTTPResponse(status: 416, headers: ["content-type": "text/html", "content-range": "bytes */600"], body: [])
        let whole = CurlMulti.merge([past], sinks: [sink])
        #expect(whole.headers["content-disposition"] == disposition && whole.headers["content-type"] == "text/csv")
        #expect(ArtifactName.choose(contentDisposition: whole.headers["content-disposition"], url: nil,
                                    contentType: whole.headers["content-type"]) == "rows.csv")
        sink.namingHeaders = [:]
        #expect(CurlMulti.merge([past], sinks: [sink]).headers["content-type"] == nil)
        #expect(CurlMulti.merge([past], sinks: [sink]).headers["content-range"] == "bytes */600")
    }

    @Test func theConnectionsAnswersMakeOne() {
        let ok = HTTPResponse(status: 206, headers: ["x": "1"], body: [], seconds: 2)
        var failed = HTTPResponse(status: 0, headers: [:], body: [], seconds: 5)
        failed.error = CurlError(code: 56, name: "Failure when receiving data from the peer")
        let stopped = HTTPResponse(status: 200, headers: ["x": "stream"], body: [], error: CurlError(code: 23, name: "write"))
        let r = RangeRequest(from: 500, through: 999, validator: "\"e\"")
        // All of the object is there: success, whatever a stopped connection said.
        let whole = CurlMulti.merge([stopped, ok], sinks: [FakeSink(range: nil, stop: .rangeDone, complete: true), FakeSink(range: r, stop: nil, complete: true)])
        #expect(whole.error == nil && whole.status == 200 && whole.headers["x"] == "stream" && whole.bytesWritten == 600 && whole.resumedFrom == 100)
        // Not all of it: the failed connection's error, and the bytes there so far.
        let part = CurlMulti.merge([ok, failed], sinks: [FakeSink(range: r, stop: nil, complete: false), FakeSink(range: r, stop: nil, complete: false)])
        #expect(part.error?.code == 56 && part.bytesWritten == 600)
        // A 416 on a closed range means the object is not the one split: start over.
        let shrunk = CurlMulti.merge([ok, HTTPResponse(status: 416, headers: [:], body: [])],
                                     sinks: [FakeSink(range: r, stop: nil, complete: false), FakeSink(range: r, stop: nil, complete: false)])
        #expect(shrunk.rangeMismatch == "HTTP 416 for bytes 500-999")
        // Every connection ended cleanly yet segments are missing: an error, never success.
        let short = CurlMulti.merge([ok, ok], sinks: [FakeSink(range: r, stop: nil, complete: false), FakeSink(range: r, stop: .superseded, complete: false)])
        #expect(short.error != nil)
        // A range answered with the whole object, which arrived cleanly: that answer is the download.
        let fellBack = CurlMulti.merge([stopped, HTTPResponse(status: 200, headers: ["x": "whole"], body: [])],
                                       sinks: [FakeSink(range: r, stop: .superseded, complete: false, segmented: false, length: 600),
                                               FakeSink(range: r, stop: nil, complete: false, segmented: false, carries: true, length: 600)])
        #expect(fellBack.error == nil && fellBack.headers["x"] == "whole" && fellBack.bytesWritten == 600)
        // One stream that ended cleanly short of the length its first answer gave (a lying range): not the object.
        let cut = CurlMulti.merge([ok], sinks: [FakeSink(range: r, stop: nil, complete: false, segmented: false, carries: true)])
        #expect(cut.error?.code == 18 /* CURLE_PARTIAL_FILE */ && cut.error?.detail.contains("600 of 1000") == true)
        // A 416 whose length is not the one the first answer gave: start over.
        let lied = CurlMulti.merge([HTTPResponse(status: 416, headers: ["content-range": "bytes */600"], body: [])],
                                   sinks: [FakeSink(range: r, stop: nil, complete: false, segmented: false, carries: true)])
        #expect(lied.rangeMismatch?.contains("600 bytes, its first answer 1000") == true)
        // One stream: its answer, with the sink's counts.
        let one = CurlMulti.merge([failed], sinks: [FakeSink(range: nil, stop: nil, complete: false, segmented: false, carries: true)])
        #expect(one.error?.code == 56 && one.bytesWritten == 600 && one.resumedFrom == 100)
        // One stream again after a takeover: a piece's clean 206 from before is not the answer; the stream's is.
        var tooBig = HTTPResponse(status: 200, headers: [:], body: [])
        tooBig.bodyTooLarge = true
        let taken = CurlMulti.merge([ok, tooBig], sinks: [FakeSink(range: r, stop: nil, complete: false, segmented: false),
                                                          FakeSink(range: r, stop: nil, complete: false, segmented: false, carries: true)])
        #expect(taken.bodyTooLarge && taken.status == 200)
        #expect(CurlMulti.merge([ok], sinks: [FakeSink(range: r, stop: nil, complete: false, segmented: false)]).error != nil,
                "no connection carries the object: never success")
        // A connection that failed counts as it ended, though its piece was handed on since.
        let handedOn = CurlMulti.merge([HTTPResponse(status: 503, headers: [:], body: []), ok], stops: [nil, nil],
                                       sinks: [FakeSink(range: r, stop: .superseded, complete: false), FakeSink(range: r, stop: nil, complete: false)])
        #expect(handedOn.status == 503)
        // The last segment alone, ended cleanly but short: not success (no hole is published).
        let last = CurlMulti.merge([ok], sinks: [FakeSink(range: r, stop: nil, complete: false)])
        #expect(last.error != nil)
        // A 416 on the last segment alone is a mismatch, never "the part is whole".
        #expect(CurlMulti.merge([HTTPResponse(status: 416, headers: [:], body: [])], sinks: [FakeSink(range: r, stop: nil, complete: false)])
            .rangeMismatch != nil)
    }

    func pseudoRandom(_ n: Int) -> [UInt8] {
        var x: UInt64 = 0x9E3779B97F4A7C15
        return (0..<n).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return UInt8(truncatingIfNeeded: x) }
    }
}
