import CLinux
import Glibc
import JobFetchCore

/// A download's `.part` file and everything its connections share: the
/// segments (one open-ended stream, or the ranges of a segmented download),
/// how far each is written and flushed, the sidecar and the progress file.
/// Each connection writes through a `PartWriter` of its own. Checkpoints
/// run on a bounded schedule, on the `CheckpointQueue`'s thread: the bytes
/// are flushed (`sync_file_range`, waited for) and only then is the
/// sidecar's `synced` advanced, so a power cut loses at most the bytes of
/// two intervals (more while the disk is slower than the download); a kill on the same boot loses nothing that was written
/// with one stream (the file's length says how far), at most 64 KiB and one
/// callback's bytes with segments (the progress file, noted that often). The decompressor is
/// told the contiguous prefix. Runs on the engine thread, inside libcurl's
/// callbacks.
package final class Part {
    let path: String
    package let limit: Int64
    /// The part as it was when the download started, and where it continues (nil: fresh).
    package let resume: PartSidecar.Resume?
    /// `segments`, `segment_min_size`, `segment_below_rate`: how a fresh body may be split.
    let split: SplitRule
    let observer: (@Sendable (PartEvent) -> Void)?
    /// How far the part's reader (the decompressor, or the hasher of a part
    /// that is not compressed) has read it; nil: nothing reads it.
    let consumed: (@Sendable () -> Int64)?
    /// The part's decompressor found that it cannot be decoded (corrupt, a
    /// bomb): the rest of the object is not worth fetching.
    let undecodableSoFar: (@Sendable () -> Bool)?

    struct Segment {
        var start: Int64
        /// nil: an open-ended stream (one connection for the whole body).
        var end: Int64?
        /// Bytes `start..<written` are in the file.
        var written: Int64
        /// `start..<synced` are on disk and recorded.
        var synced: Int64
        /// The end of the range whose writeback the last checkpoint asked the queue to start.
        var pending: Int64
        /// The end of the range whose writeback was last started (every `hintBytes`).
        var hinted: Int64
        /// The connection fetching it; nil when none is (another may take it over).
        var owner: ObjectIdentifier?
        /// Its connection's answer was accepted.
        var live = false
        /// A connection was started for it and has not ended.
        var busy = false

        var isWhole: Bool { end.map { written >= $0 } ?? false }
    }

    var segments: [Segment] = []
    private(set) var fd: Int32 = -1
    private var progressFD: Int32 = -1
    package private(set) var sidecar: PartSidecar?
    package var error: SystemError?
    package var tooLarge = false
    /// The decompressor failed (`undecodableSoFar`): the download stops, every
    /// connection with it. Latched once seen, so every check after agrees.
    package var undecodable: Bool {
        if !undecodableSeen, undecodableSoFar?() == true { undecodableSeen = true }
        return undecodableSeen
    }
    private var undecodableSeen = false
    /// Why an answer could not be placed in the part (another range, another
    /// object): every connection stops and the download restarts from zero.
    package var mismatch: String?
    /// Connections the part wants beside the ones running (segments), for the transfer layer to start.
    var queued: [PartWriter] = []
    /// Bytes of the object in the file before this download started.
    package private(set) var resumedBytes: Int64 = 0
    /// The `If-Range` of a segmented part's requests.
    private var validator: String?
    /// A fresh answer that may be split once its connection's rate is known: the object's length, and when the answer came.
    private var probe: (length: Int64, validator: String, since: Double)?
    /// The server answered a range with the whole object: no more ranges are asked for.
    private var rangesRefused = false
    /// Segments before this one are whole (the contiguous prefix ends in it).
    private var firstOpen = 0
    private var lastCheckpoint = SystemClock.monotonic()
    private var sinceCheckpoint: Int64 = 0
    private var unrecorded: Int64 = 0
    /// The part's pages before this were released from the page cache.
    private var released: Int64 = 0
    /// How a checkpoint makes its ranges durable on this part's filesystem.
    private(set) var flush = CheckpointFlush.wholeFile
    /// Where checkpoints wait for the disk.
    let flusher: CheckpointQueue
    /// The part's descriptor for the checkpoint queue.
    private var flushFile: SharedFD?
    /// The checkpoint on the queue, and the segments' `synced` once it is done.
    private var flushing: (ticket: FlushTicket, targets: [(Int, Int64)])?

    static let checkpointBytes: Int64 = 16 << 20
    static let checkpointSeconds = 1.0
    /// Writeback of what arrived is started every few MiB, so a checkpoint rarely has to wait for much.
    static let hintBytes: Int64 = 4 << 20
    /// A segmented part notes how far each segment was written this often
    /// (bytes, all segments, checked once per libcurl callback of up to
    /// 256 KiB): a kill loses at most about that much more of what was
    /// written, beside what the sockets held. One small pwrite into the
    /// page cache; at 100 MB/s, 1,600 a second.
    static let progressBytes: Int64 = 64 << 10

    package init(path: String, limit: Int64, resume: PartSidecar.Resume?, split: SplitRule = SplitRule(count: 1),
                 observer: (@Sendable (PartEvent) -> Void)?, consumed: (@Sendable () -> Int64)? = nil,
                 undecodable: (@Sendable () -> Bool)? = nil, flusher: CheckpointQueue = CheckpointQueue()) {
        self.undecodableSoFar = undecodable
        self.path = path
        self.flusher = flusher
        self.limit = limit
        self.resume = resume
        self.split = split
        self.observer = observer
        self.consumed = consumed
    }

    deinit {
        // No record of this part may land after its owner moved on (published or discarded it).
        settle()
        if fd >= 0 { close(fd) }
        if progressFD >= 0 { close(progressFD) }
    }

    package var aborted: Bool { error != nil || tooLarge || mismatch != nil || undecodable }
    package var isSegmented: Bool { segments.count > 1 || segments.first?.end != nil }

    /// The first connection's writer. A resumed segmented part queues one
    /// for every other segment that is not whole.
    package func firstWriter() -> PartWriter {
        guard let resume else {
            let w = PartWriter(part: self, start: 0, range: nil, stream: true)
            segments = [Segment(start: 0, end: nil, written: 0, synced: 0, pending: 0, hinted: 0, owner: ObjectIdentifier(w), busy: true)]
            return w
        }
        guard let from = resume.segmentFrom, let layout = resume.sidecar.segments, let validator = resume.sidecar.validator else {
            resumedBytes = resume.offset
            let w = PartWriter(part: self, start: 0, range: (resume.offset, nil, resume.sidecar.validator ?? ""), stream: true)
            let synced = resume.sidecar.synced
            segments = [Segment(start: 0, end: nil, written: resume.offset, synced: synced, pending: synced, hinted: synced,
                                owner: ObjectIdentifier(w), busy: true)]
            return w
        }
        segments = zip(layout, from).map { seg, f in
            Segment(start: seg.start, end: seg.end, written: f, synced: seg.synced, pending: seg.synced, hinted: seg.synced)
        }
        resumedBytes = zip(layout, from).reduce(0) { $0 + $1.1 - $1.0.start }
        sidecar = resume.sidecar
        sidecar?.boot = PartSidecar.currentBoot
        self.validator = validator
        // As many connections as a fresh split would have, on the first pieces not whole; the rest follow in order.
        var writers: [PartWriter] = []
        while writers.count < max(1, split.count), let w = assignNext() { writers.append(w) }
        queued = Array(writers.dropFirst())
        return writers[0]
    }

    /// A writer for the first piece that is not whole and has no connection; nil when none is left.
    private func assignNext() -> PartWriter? {
        guard let validator, !rangesRefused, !aborted,
              let i = segments.indices.first(where: { !segments[$0].isWhole && !segments[$0].busy }), let end = segments[i].end else { return nil }
        let w = PartWriter(part: self, start: segments[i].start, range: (segments[i].written, end - 1, validator), stream: false)
        segments[i].owner = ObjectIdentifier(w)
        segments[i].busy = true
        return w
    }

    /// Writers for the connections to start beside the running ones; taken once.
    package func takeQueued() -> [PartWriter] {
        defer { queued = [] }
        // A download that failed starts no more connections.
        return aborted ? [] : queued
    }

    /// The segment that begins at `start` (segments are sorted by it).
    func index(_ start: Int64) -> Int? {
        var lo = 0, hi = segments.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if segments[mid].start < start { lo = mid + 1 } else { hi = mid }
        }
        return lo < segments.count && segments[lo].start == start ? lo : nil
    }

    func owns(_ w: PartWriter) -> Bool {
        guard let i = index(w.start) else { return false }
        return segments[i].owner == ObjectIdentifier(w)
    }

    /// Bytes of the object in the file.
    package var size: Int64 { segments.reduce(0) { $0 + $1.written - $1.start } }

    package var isComplete: Bool { !segments.isEmpty && segments.allSatisfy(\.isWhole) }

    /// How far the file is good from byte 0: what the decompressor may read.
    var prefix: Int64 {
        // Whole segments stay whole, so the scan goes on from where it stopped.
        while firstOpen < segments.count && segments[firstOpen].isWhole { firstOpen += 1 }
        return firstOpen < segments.count ? segments[firstOpen].written : segments.last?.end ?? 0
    }

    // MARK: answers

    func openFile(truncating: Bool) -> Bool {
        if fd >= 0 && !truncating { return true }
        settle()
        if fd >= 0 { close(fd) }
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncating ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { error = SystemError("open", path); return false }
        flush = CheckpointFlush.forFile(fd)
        flushFile = SharedFD(dup: fd)
        guard flushFile != nil else { error = SystemError("dup", path); return false }
        return true
    }

    /// A 206 for `w`'s range: the same object, exactly the bytes asked for.
    func accept206(_ w: PartWriter, headers: [String: String], url: ParsedURL) -> Bool {
        // What the last checkpoint recorded is what the resume builds on.
        if !isSegmented { settle() }
        guard let asked = w.ask, let old = sidecar ?? resume?.sidecar else {
            mismatch = "a 206 answered a request without a range"; return false
        }
        let etag = headers["etag"]
        guard let range = ContentRange.parse(headers["content-range"]), range.start == asked.from,
              asked.through == nil || range.end == asked.through else {
            let want = "\(asked.from)-" + (asked.through.map(String.init) ?? "")
            mismatch = "asked for bytes \(want), the server sent \(headers["content-range"] ?? "no Content-Range")"
            return false
        }
        if let e = etag, let was = old.etag, e != was { mismatch = "the ETag changed (\(was) → \(e))"; return false }
        // A 206 carries the ETag a 200 would (RFC 9110): one without it cannot be told to be the same object.
        if etag == nil, let was = old.etag { mismatch = "the resumed answer has no ETag (the object had \(was))"; return false }
        if let m = headers["last-modified"], let was = old.lastModified, m != was { mismatch = "Last-Modified changed (\(was) → \(m))"; return false }
        if let t = range.total, let was = old.length, t != was { mismatch = "the length changed (\(was) → \(t))"; return false }
        // An open range runs to the object's end: a shorter one would leave a hole the stream cannot fill.
        if asked.through == nil, let length = range.total ?? old.length, let end = range.end, end != length - 1 {
            mismatch = "asked for bytes \(asked.from)- of \(length), the server sent \(headers["content-range"] ?? "")"
            return false
        }
        if headers["content-encoding"] != nil { mismatch = "the resumed answer has a Content-Encoding"; return false }
        guard let i = index(w.start) else { return false }
        if !isSegmented {
            guard openFile(truncating: false) else { return false }
            // Whatever lies past the offset may be garbage (after a reboot, past
            // the last checkpoint): cut it, then append.
            guard ftruncate(fd, off_t(asked.from)) == 0 else { error = SystemError("truncate", path); return false }
            // The kept bytes past the checkpoint start their writeback now, so the
            // first checkpoint does not wait for all of them at once.
            if asked.from > old.synced {
                hint(old.synced, asked.from)
            }
            // Still only `synced` is known to be durable: the first checkpoint
            // flushes from there, the bytes kept from before the restart included.
            sidecar = PartSidecar(url: url.redacted, etag: etag ?? old.etag, lastModified: headers["last-modified"] ?? old.lastModified,
                                  length: range.total ?? old.length, synced: old.synced, encoding: nil,
                                  disposition: old.disposition, contentType: old.contentType)
        } else {
            guard openFile(truncating: false) else { return false }
            if progressFD < 0 { recordProgress() }
        }
        segments[i].live = true
        if let length = sidecar?.length, length > limit { tooLarge = true; return false }
        return true
    }

    /// A whole body from byte 0 on `w`'s connection (a fresh request, or a
    /// range the server answered with all of the object). Returns false to
    /// stop `w`: with `w.stop` set when another connection carries on.
    func acceptWhole(_ w: PartWriter, headers: [String: String], url: ParsedURL) -> Bool {
        if w.ask != nil && streamRunning {
            // A stream from byte 0 is running (the first 200 wins): this
            // connection's segment is left to it.
            if let i = index(w.start) { segments[i].live = false; segments[i].busy = false }
            // That server does not serve ranges after all: the stream runs on through every piece left.
            rangesRefused = true
            for q in queued { if let i = index(q.start) { segments[i].busy = false } }
            queued = []
            w.stopped = .superseded
            return false
        }
        let encoding = headers["content-encoding"]
        let length = headers["content-length"].flatMap { Int64($0) }
        // Told before the file is cut, so a reader of the old bytes starts over.
        observer?(.fresh(encoding: encoding))
        guard openFile(truncating: true) else { return false }
        for q in queued { q.stopped = .superseded }
        queued = []
        resumedBytes = 0
        w.start = 0
        w.stream = true
        w.position = 0
        segments = [Segment(start: 0, end: nil, written: 0, synced: 0, pending: 0, hinted: 0, owner: ObjectIdentifier(w), live: true, busy: true)]
        firstOpen = 0
        released = 0
        validator = nil
        probe = nil
        streamRunning = true
        if progressFD >= 0 { close(progressFD); progressFD = -1 }
        FileIO.unlinkIfPresent(PartSidecar.progressPath(for: path))
        let s = PartSidecar(url: url.redacted, etag: headers["etag"], lastModified: headers["last-modified"], length: length,
                            synced: 0, encoding: encoding, disposition: PartSidecar.keepable(headers["content-disposition"]),
                            contentType: PartSidecar.keepable(headers["content-type"]))
        // max_artifact_size is checked against the announced length before anything is written.
        if let length, length > limit { tooLarge = true; return false }
        // A fresh answer from a server that serves ranges of a large, identified
        // object may be split over more connections once this one proves slow
        // (never after a range was answered with the whole object: that server does not split).
        if w.ask == nil, let length, encoding == nil, let validator = s.validator, split.count > 1, length >= split.minSize,
           headers["accept-ranges"]?.lowercased().split(separator: ",").contains(where: { $0.trimmingWhitespace() == "bytes" }) == true {
            probe = (length, validator, SystemClock.monotonic())
        }
        sidecar = s
        if probe != nil && split.belowRate == .infinity { splitStream(w, rate: nil) }
        guard let saved = sidecar else { return false }
        do { try saved.save(part: path) } catch { self.error = error; return false }
        lastCheckpoint = SystemClock.monotonic()
        return true
    }

    /// The stream `w` measured at `rate` bytes/s (nil: not yet measured) is
    /// split: it keeps the piece it is in, and `split.count - 1` more
    /// connections fetch the next pieces in order.
    private func splitStream(_ w: PartWriter, rate: Double?) {
        guard let p = probe else { return }
        probe = nil
        settle()
        let piece = split.piece ?? rate.map { Int64(min($0 * split.pieceSeconds, Double(p.length))) }
        guard segments.count == 1, let layout = PartSidecar.layout(length: p.length, count: split.count, minSize: split.minSize,
                                                                    piece: piece, from: w.position) else { return }
        // The stream keeps its segment (how far it is written and flushed, its connection), now with an end.
        var stream = segments[0]
        stream.end = layout[0].end
        segments = [stream] + layout.dropFirst().map {
            Segment(start: $0.start, end: $0.end, written: $0.start, synced: $0.start, pending: $0.start, hinted: $0.start)
        }
        validator = p.validator
        for _ in 1..<split.count {
            guard let h = assignNext() else { break }
            queued.append(h)
        }
        sidecar = recordedSidecar()
        recordProgress()
        observer?(.split(connections: split.count, pieces: segments.count - 1, rate: rate))
    }

    /// Split the stream once `split` finds it slow; stop watching once it finds it fast.
    private func considerSplit(_ w: PartWriter) {
        guard let p = probe, w.stream, segments.count == 1 else { return }
        let elapsed = SystemClock.monotonic() - p.since
        switch split.verdict(bytes: w.position, elapsed: elapsed) {
        case .watch: return
        case .stay: probe = nil; return
        case .split: break
        }
        splitStream(w, rate: SplitRule.rate(bytes: w.position, elapsed: elapsed))
        guard let s = sidecar else { return }
        do { try s.save(part: path) } catch { self.error = error }
    }

    /// The fresh stream (segment 0's connection from byte 0) is still receiving.
    var streamRunning = false

    // MARK: bytes

    /// `data` at `w`'s position. False stops `w` (`w.stop` says when that is no fault).
    func write(_ w: PartWriter, _ data: UnsafeRawBufferPointer) -> Bool {
        var rest = data
        // However the call ends, the decompressor learns how far the file is good.
        defer { if rest.count < data.count { observer?(.size(prefix)) } }
        while !rest.isEmpty {
            guard !aborted else { return false }
            guard let i = index(w.start), segments[i].owner == ObjectIdentifier(w) else { return false }
            var room = Int64(rest.count)
            if let end = segments[i].end {
                room = min(room, end - w.position)
                if room <= 0 {
                    guard w.stream, advanceStream(w, from: i) else {
                        if !w.stream { mismatch = "the server sent more than the range asked for (bytes \(segments[i].start)-\(end - 1))" }
                        return false
                    }
                    continue
                }
            } else if w.position + room > limit {
                tooLarge = true
                return false
            } else if let length = sidecar?.length, w.position + room > length {
                // One stream past the length its first answer gave: not that object.
                mismatch = "the server sent more than the object's length (\(length) bytes)"
                return false
            }
            let chunk = UnsafeRawBufferPointer(rebasing: rest[..<Int(room)])
            do { try FileIO.writeAll(fd: fd, chunk, at: w.position, path: path) } catch { self.error = error; return false }
            w.position += room
            // A stream writing a piece again (see advanceStream) leaves what is there counted.
            segments[i].written = max(segments[i].written, w.position)
            rest = UnsafeRawBufferPointer(rebasing: rest[Int(room)...])
            sinceCheckpoint += room
            unrecorded += room
            if w.position - segments[i].hinted >= Self.hintBytes {
                hint(segments[i].hinted, w.position)
                segments[i].hinted = w.position
            }
        }
        if probe != nil { considerSplit(w) }
        if isSegmented && unrecorded >= Self.progressBytes { recordProgress() }
        if sinceCheckpoint >= Self.checkpointBytes * Int64(isSegmented ? max(1, split.count) : 1)
            || SystemClock.monotonic() - lastCheckpoint >= Self.checkpointSeconds {
            checkpoint()
        }
        return error == nil
    }

    /// The stream reached the end of segment `i`: it runs on into the next
    /// when no connection is fetching it (none was started, or its connection
    /// got no answer yet: queued behind max_host_connections), else stops
    /// (its range is whole).
    private func advanceStream(_ w: PartWriter, from i: Int) -> Bool {
        guard i + 1 < segments.count else {
            mismatch = "the server sent more than the object's length (\(segments[i].end.map(String.init) ?? "?") bytes)"
            return false
        }
        let next = segments[i + 1]
        // A piece partly written by a connection that failed is asked for from where it stopped, by the next free connection.
        // Once the server has answered a range with the whole object no range is asked for again:
        // the stream runs through every piece left, writing again what other connections wrote
        // (the same bytes: their 206s carried its validator) and taking their pieces over.
        if !rangesRefused && (next.live || next.isWhole || next.written > next.start) {
            w.stopped = .rangeDone
            streamRunning = false
            return false
        }
        segments[i].busy = false
        segments[i + 1].owner = ObjectIdentifier(w)
        segments[i + 1].busy = true
        segments[i + 1].live = true
        w.start = next.start
        // A writer that was never started keeps its place among the connections: it takes the next free piece.
        let before = queued.count
        queued.removeAll { $0.start == next.start }
        if queued.count < before, let h = assignNext() { queued.append(h) }
        return true
    }

    /// A connection ended. Its piece is free for another connection; if it
    /// made its piece whole or stepped aside, its place goes to the next free
    /// piece (a failed connection's place is not refilled, so a server that
    /// fails every range ends the attempt).
    func release(_ w: PartWriter) {
        var done = w.ended == .superseded
        if let i = index(w.start), segments[i].owner == ObjectIdentifier(w) {
            segments[i].live = false
            segments[i].busy = false
            done = done || segments[i].isWhole
        }
        if w.stream { streamRunning = false }
        // Writers never started hold the part (and its descriptors): a download that failed lets them go.
        if aborted { queued = []; return }
        if done, isSegmented, let h = assignNext() { queued.append(h) }
    }

    // MARK: durability

    /// Notes how far every segment was written (not flushed: the page cache
    /// keeps it across a kill, and it only counts on this boot).
    private func recordProgress() {
        unrecorded = 0
        if progressFD < 0 {
            let p = PartSidecar.progressPath(for: path)
            progressFD = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard progressFD >= 0 else { return }
        }
        // A segment flushed as far as it was written needs no note: its checkpoint says as much.
        let record = PartSidecar.progressRecord(segments.filter { $0.written > $0.synced }.map { ($0.start, $0.written) })
        _ = record.withUnsafeBytes { pwrite(progressFD, $0.baseAddress, $0.count, 0) }
    }

    private func recordedSidecar(_ segments: [Segment]? = nil) -> PartSidecar? {
        let segments = segments ?? self.segments
        guard var s = sidecar else { return nil }
        if isSegmented {
            s.segments = segments.map { PartSidecar.Segment(start: $0.start, end: $0.end ?? $0.written, synced: $0.synced) }
        } else {
            s.synced = segments.first?.synced ?? 0
        }
        return s
    }

    /// Records progress without stalling the transfer: the ranges written
    /// since the last checkpoint have had one interval to reach the disk
    /// (their writeback was started then); the checkpoint queue waits for
    /// them, advances `synced` to their ends in the sidecar, and starts the
    /// writeback of what came since. A power cut re-sends at most two
    /// intervals (longer ones while the disk is slower than the download:
    /// one checkpoint runs at a time, and the next is due again at the next
    /// write once it is done). The engine thread only hands it over.
    func checkpoint() {
        // After a failed flush nothing more is recorded: the queue's descriptor shares the file's
        // error state with this one, and the next flush of the same range would report success.
        guard fd >= 0, sidecar != nil, error == nil else { return }
        if let (ticket, _) = flushing {
            guard ticket.result != nil else { return }
            absorb()
            guard error == nil else { return }
        }
        lastCheckpoint = SystemClock.monotonic()
        sinceCheckpoint = 0
        if isSegmented { recordProgress() }
        guard let file = flushFile else { return }
        let waiting = segments.indices.filter { segments[$0].pending > segments[$0].synced }
        var record: PartSidecar?
        if !waiting.isEmpty {
            var after = segments
            for i in waiting { after[i].synced = after[i].pending }
            record = recordedSidecar(after)
        }
        let starts = segments.indices.filter { segments[$0].written > segments[$0].pending }
        guard record != nil || !starts.isEmpty else { return }
        let job = FlushJob(file: file, path: path, flush: flush,
                           waits: waiting.map { FlushJob.Span(from: segments[$0].synced, to: segments[$0].pending) },
                           record: record, consumed: consumed, released: released,
                           starts: starts.map { FlushJob.Span(from: segments[$0].pending, to: segments[$0].written) },
                           fault: flusher.fault)
        let targets = waiting.map { ($0, segments[$0].pending) }
        for i in starts {
            segments[i].pending = segments[i].written
            segments[i].hinted = segments[i].written
        }
        let ticket = FlushTicket()
        flushing = (ticket, targets)
        flusher.run { ticket.complete(job.run()) }
    }

    /// Waits for the checkpoint on the queue, if one is, and takes in what
    /// it did. Whatever changes the file or its sidecar on the engine
    /// thread (a fresh body, a split, the end) settles first, so no older
    /// record lands after it.
    package func settle() {
        guard let (ticket, _) = flushing else { return }
        _ = ticket.wait()
        absorb()
    }

    /// The finished checkpoint's outcome: its ranges are durable and
    /// recorded, or its error is the part's.
    private func absorb() {
        guard let (ticket, targets) = flushing, let outcome = ticket.result else { return }
        flushing = nil
        released = outcome.released
        if let e = outcome.error { if error == nil { error = e }; return }
        guard let saved = outcome.saved else { return }
        for (i, synced) in targets where i < segments.count { segments[i].synced = max(segments[i].synced, synced) }
        sidecar = saved
    }

    /// Starts the writeback of `from..<to`, off the engine thread.
    private func hint(_ from: Int64, _ to: Int64) {
        guard let file = flushFile else { return }
        flusher.run { file.startWriteback(from, to) }
    }

    /// A connection ended, whatever the reason: what arrived is kept, and
    /// recorded as far as it is known to be on disk; `durably` (a shutdown)
    /// flushes all of it first. (A whole download is fsynced when published.)
    func finish(durably: Bool) {
        guard fd >= 0 else { return }
        // Other connections still run: a note of the progress is enough; the
        // checkpoints keep their schedule (a finished piece is no reason to wait for the disk).
        if !durably, error == nil, isSegmented, !queued.isEmpty || segments.contains(where: \.busy) {
            recordProgress()
            return
        }
        settle()
        if error != nil {
            distrustUnsyncedBytes()
            return
        }
        if durably, sidecar != nil, segments.contains(where: { $0.written > $0.synced }) {
            if fdatasync(fd) == 0 {
                for i in segments.indices { segments[i].synced = segments[i].written; segments[i].pending = segments[i].written }
                if let s = recordedSidecar() {
                    do { try s.save(part: path); sidecar = s } catch { self.error = error }
                }
            } else {
                error = SystemError("fdatasync", path)
            }
        } else {
            // The last checkpoint is waited for: what the sidecar says when the connection is gone is what a resume finds.
            checkpoint()
            settle()
        }
        if error != nil { distrustUnsyncedBytes() }
    }

    /// After a failed write or flush the file's length proves nothing: pages
    /// whose writeback failed are dropped clean, and a later read may return
    /// what was on disk before. The sidecar forgets its boot, so the next
    /// resume starts from the checkpoints, the last flushes that succeeded;
    /// if even that cannot be recorded, the part starts over.
    private func distrustUnsyncedBytes() {
        guard var s = recordedSidecar() ?? PartSidecar.load(part: path), s.boot != nil else { return }
        s.boot = nil
        do { try s.save(part: path); sidecar = s } catch { PartSidecar.discard(part: path) }
    }
}

/// How a checkpoint makes the ranges it records durable. `sync_file_range`
/// waits for the data alone. On ext4 and XFS the allocation that writeback
/// made for it is in the one journal, committed in order no later than the
/// sidecar's own fsync, so the recorded bytes are readable after a power
/// cut. btrfs logs each file's extents apart (the sidecar's fsync does not
/// commit the part's), and of other filesystems nothing is known: there a
/// checkpoint is an `fdatasync` of the part, which includes its allocation.
package enum CheckpointFlush: Sendable, Equatable {
    case dataRange
    case wholeFile

    static let ext4: Int64 = 0xEF53
    static let xfs: Int64 = 0x5846_5342

    package static func forFilesystem(magic: Int64) -> CheckpointFlush {
        magic == ext4 || magic == xfs ? .dataRange : .wholeFile
    }

    package static func forFile(_ fd: Int32) -> CheckpointFlush { forFilesystem(magic: jf_fs_type(fd)) }
}

/// How a fresh download may be split over several connections.
package struct SplitRule: Sendable {
    /// `segments`: connections at most (1: never split).
    package var count: Int
    /// `segment_min_size`: smaller objects are one stream.
    package var minSize: Int64
    /// `segment_below_rate`: split only when the first connection brings
    /// fewer bytes per second than this over its first `probeSeconds`, or
    /// less than half of it over the first quarter of them (a fast
    /// connection is not what limits the download); .infinity: split at the
    /// first answer, in equal parts.
    package var belowRate: Double
    package var probeSeconds: Double
    /// A piece is this many seconds of the first connection's rate: small
    /// enough for the prefix to follow closely, large enough that a new
    /// request per piece costs little.
    package var pieceSeconds: Double
    /// A fixed piece size (nil: from the rate).
    package var piece: Int64?

    package init(count: Int, minSize: Int64 = .max, belowRate: Double = .infinity, probeSeconds: Double = 0.2,
                 pieceSeconds: Double = 0.5, piece: Int64? = nil) {
        self.count = count
        self.minSize = minSize
        self.belowRate = belowRate
        self.probeSeconds = probeSeconds
        self.pieceSeconds = pieceSeconds
        self.piece = piece
    }

    package enum Verdict: Equatable { case watch, split, stay }

    /// What to do with a fresh stream that brought `bytes` in the `elapsed`
    /// seconds since its answer began. A connection clearly slower than the
    /// rate (under half of it) is split after a quarter of the probe: every
    /// moment on one connection is the other connections' worth lost, and
    /// one that slow would pass at the end only by bringing more than 7/6 of
    /// the rate, over twice its speed so far, for the rest of the probe. One
    /// nearer the rate is judged over the whole probe.
    package func verdict(bytes: Int64, elapsed: Double) -> Verdict {
        guard elapsed >= probeSeconds / 4 else { return .watch }
        let rate = Self.rate(bytes: bytes, elapsed: elapsed)
        if rate < belowRate / 2 { return .split }
        guard elapsed >= probeSeconds else { return .watch }
        return rate < belowRate ? .split : .stay
    }

    /// Bytes per second of a stream that brought `bytes` in `elapsed` seconds.
    static func rate(bytes: Int64, elapsed: Double) -> Double { Double(bytes) / max(elapsed, 1e-6) }
}

/// One connection's view of a `Part`: where its bytes go, and why it stopped.
package final class PartWriter {
    package let part: Part
    /// The segment it fetches (by its start); 0 for a stream.
    var start: Int64
    /// What it asks for: from, through (inclusive; nil: to the end), If-Range.
    package let ask: (from: Int64, through: Int64?, validator: String)?
    /// Open-ended: it may run on into segments nobody is fetching.
    var stream: Bool
    /// Where its next byte goes.
    var position: Int64
    var stopped: Stop?
    /// Why it ended its connection on purpose: as it said, or because its
    /// segment is another connection's now.
    package var ended: Stop? { stopped ?? (part.owns(self) || part.aborted ? nil : .superseded) }

    /// It ended its connection on purpose; no fault.
    package enum Stop: Sendable {
        /// Its range is whole (a stream that reached a segment another connection has).
        case rangeDone
        /// Another connection took its segment or the whole download over.
        case superseded
    }

    init(part: Part, start: Int64, range: (from: Int64, through: Int64?, validator: String)?, stream: Bool) {
        self.part = part
        self.start = start
        self.ask = range
        self.stream = stream
        self.position = range?.from ?? 0
    }

    package var limit: Int64 { part.limit }
    package var size: Int64 { part.size }
    package var sidecar: PartSidecar? { part.sidecar }
    package var error: SystemError? {
        get { part.error }
        set { part.error = newValue }
    }
    package var tooLarge: Bool { part.tooLarge }
    package var undecodable: Bool { part.undecodable }
    package var mismatch: String? { part.mismatch }
    /// It is the one stream of a download that is not segmented.
    package var carriesWholeObject: Bool { stream && !part.isSegmented && part.owns(self) }

    /// At the first body byte of a 2xx answer. False stops the transfer.
    package func begin(status: Int, headers: [String: String], url: ParsedURL) -> Bool {
        guard !part.aborted else { return false }
        guard part.owns(self) else { return false }
        return status == 206 ? part.accept206(self, headers: headers, url: url) : part.acceptWhole(self, headers: headers, url: url)
    }

    package func write(_ data: UnsafeRawBufferPointer) -> Bool { part.write(self, data) }

    package func finish(durably: Bool) {
        part.release(self)
        part.finish(durably: durably)
    }
}
