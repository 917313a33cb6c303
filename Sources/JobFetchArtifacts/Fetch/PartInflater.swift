import CLinux
import Foundation
import Glibc
import Synchronization
import JobFetchCore

/// What a download's `.part` is told as bytes arrive: a fresh body (the
/// file was truncated; its `Content-Encoding`), or its new size.
public enum PartEvent: Sendable {
    case fresh(encoding: String?)
    case size(Int64)
    /// The download was split: its first connection brought `rate` bytes/s
    /// (nil: not measured), the rest goes in `pieces` pieces over up to `connections`.
    case split(connections: Int, pieces: Int, rate: Double?)
}

/// Decompresses and hashes a `.part` on worker threads while it downloads,
/// so transfer, decompression and sha256 overlap. It follows the file as it
/// grows (the engine reports each new size), reads from the start, so after
/// a resume it first catches up over the bytes already on disk, and writes
/// `<staging>/.artifact.out` (hashed by a `FollowingHasher` as it grows);
/// a part that is not compressed is hashed as it arrives. When the download
/// ends the engine calls `finish`; the worker drains what is left, records
/// its outcome and makes `doneFD` readable (polled with libcurl's sockets).
public final class PartInflater: Sendable {
    public typealias Outcome = DecodeOutcome

    public let part: String
    public let output: String
    let job: String?
    let limit: Int64
    let maxRatio: Double
    /// Where a zip archive is extracted (the staging directory), and the
    /// top-level names its entries must not take.
    let extractInto: String
    let reserved: Set<String>
    /// The worker following the part.
    private let follower: FileFollower<Outcome>
    /// Readable once `outcome` is set.
    public var doneFD: Int32 { follower.doneFD }
    /// Bumped at each fresh body: the worker starts over.
    private let generation = Atomic<Int>(0)
    /// How far the worker has read the part (a zip's is read only at the end: 0 until then).
    private let readPosition = Atomic<Int64>(0)
    private let encoding = Mutex<String?>(nil)
    /// The worker ended with `.failed` (not cancelled): the part cannot be decoded.
    private let failed = Atomic<Bool>(false)

    /// `job` (`kind/id`): a crash on the worker threads is held against it (`CrashGuard`).
    public init(part: String, output: String, limit: Int64, maxRatio: Double,
                extractInto: String? = nil, reserved: Set<String> = [], job: String? = nil) throws(SystemError) {
        self.job = job
        self.part = part
        self.output = output
        self.limit = limit
        self.maxRatio = maxRatio
        self.extractInto = extractInto ?? FileIO.parent(part)
        self.reserved = reserved
        follower = try FileFollower(path: part, blockingDone: false)
        // The thread holds the inflater until it returns, so the eventfds outlive it.
        follower.start(name: "jf-inflate", job: job) { [self] in
            #if DEBUG
            // Fault injection for the crash-guard test: a trap on this job's worker.
            if let job = self.job, getenv("JOBFETCH_FAULT_CRASH_WORKER").map({ String(cString: $0) }) == job {
                preconditionFailure("JOBFETCH_FAULT_CRASH_WORKER \(job)")
            }
            #endif
            return self.decode()
        }
    }

    public var outcome: Outcome? { follower.outcome }

    /// What the download brought so far cannot be decoded (corrupt data, a
    /// bomb): fetching the rest cannot help. Set before `outcome` is.
    public var hasFailed: Bool { failed.load(ordering: .acquiring) }

    /// Bytes of the part the worker has read: the part's pages before this
    /// are not read again (see `Part`'s release of its page cache).
    public var consumed: Int64 { readPosition.load(ordering: .relaxed) }

    // MARK: called by the engine thread

    public func observe(_ event: PartEvent) {
        switch event {
        case .fresh(let enc):
            encoding.withLock { $0 = enc }
            follower.advance(to: 0, wake: false)
            generation.add(1, ordering: .sequentiallyConsistent)
        case .size(let n):
            follower.advance(to: n, wake: false)
        case .split:
            return
        }
        follower.wake()
    }

    /// The download is whole at `size` bytes: drain and finish.
    public func finish(size: Int64) { follower.end(at: size) }

    /// The download stopped: the worker stops too and its output is dropped.
    public func cancel() { follower.cancel() }

    // MARK: the worker

    private enum Restart: Error { case again }

    private func decode() -> Outcome {
        while true {
            do {
                let outcome = try attempt()
                if case .failed = outcome, !follower.isCancelled { failed.store(true, ordering: .releasing) }
                return outcome
            } catch {
                // A fresh body arrived while decoding the old one: start over.
                continue
            }
        }
    }

    /// One pass over the part from its start; throws `Restart` when the body was replaced.
    private func attempt() throws(Restart) -> Outcome {
        let gen = generation.load(ordering: .sequentiallyConsistent)
        // Opened once a byte is there (the part may not exist yet).
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        var outFD: Int32 = -1
        defer { if outFD >= 0 { close(outFD) } }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: InflateStream.chunk, alignment: 16)
        defer { buffer.deallocate() }
        var stream: InflateStream?
        var plain: SHA256Stream?
        var hasher: FollowingHasher?
        defer { hasher?.cancel() }
        var writeback = OutputWriteback()
        var pos: Int64 = 0
        readPosition.store(0, ordering: .relaxed)
        var isZip = false
        while true {
            if follower.isCancelled { return .failed("cancelled") }
            if generation.load(ordering: .sequentiallyConsistent) != gen { throw .again }
            let isEnded = follower.isEnded
            let avail = follower.size
            if fd < 0 && avail > 0 {
                fd = open(part, O_RDONLY | O_CLOEXEC)
                if fd < 0 { return .writeFailed(SystemError("open", part).description) }
            }
            if stream == nil && plain == nil && !isZip && (avail >= Int64(InflateStream.sniffBytes) || isEnded) {
                var head = [UInt8](repeating: 0, count: InflateStream.trialBytes)
                let n = avail >= 2 ? head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(min(avail, Int64($0.count))), 0) } : 0
                var format = n >= 2 ? head.withUnsafeBytes { InflateStream.sniff(UnsafeRawBufferPointer(rebasing: $0[0..<min(n, InflateStream.sniffBytes)])) } : nil
                if format == .zlib {
                    // Decided on the first kilobytes, once they are here: text can look like zlib's start.
                    if n < InflateStream.trialBytes && !isEnded { follower.waitForMore(); continue }
                    let whole = isEnded && Int64(n) == avail
                    if !head.withUnsafeBytes({ InflateStream.decodesCleanly(UnsafeRawBufferPointer(rebasing: $0[0..<n]), as: .zlib, whole: whole) }) {
                        format = nil
                    }
                }
                isZip = n >= 4 && ZipExtractor.isZip(head)
                if format == nil, let enc = encoding.withLock({ $0 })?.lowercased(), enc == "deflate" { format = .deflate }
                if let format {
                    do { stream = try InflateStream(format: format, limit: limit, maxRatio: maxRatio) } catch { return .failed(error.message) }
                    outFD = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                    guard outFD >= 0 else { return .writeFailed(SystemError("create", output).description) }
                    do { hasher = try FollowingHasher(path: output, job: job) } catch { return .writeFailed(error.description) }
                } else if !isZip {
                    // A zip is not published as such: nothing to hash, it is extracted at the end.
                    do { plain = try SHA256Stream() } catch { return .writeFailed(error.description) }
                }
            }
            if stream != nil || plain != nil, pos < avail {
                let want = Int(min(Int64(buffer.count), avail - pos))
                let n = Syscall.uninterrupted { pread(fd, buffer.baseAddress, want, off_t(pos)) }
                if n < 0 { return .writeFailed(SystemError("read", part).description) }
                if n == 0 { throw .again }  // the file was cut under us: a fresh body is on its way
                pos += Int64(n)
                readPosition.store(pos, ordering: .relaxed)
                let input = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                if let plain { plain.update(input); continue }
                guard let s = stream else { continue }
                var writeProblem: SystemError?
                do {
                    try s.feed(input) { (out: UnsafeRawBufferPointer) throws(JobFetchError) in
                        do throws(SystemError) { try FileIO.writeAll(fd: outFD, out, path: output) } catch {
                            writeProblem = error
                            throw JobFetchError(error.description)
                        }
                    }
                } catch {
                    if generation.load(ordering: .sequentiallyConsistent) != gen { throw .again }
                    if let writeProblem { return .writeFailed(writeProblem.description) }
                    return .failed(error.message)
                }
                hasher?.advance(to: s.produced)
                if let problem = writeback.advance(fd: outFD, to: s.produced, hashed: hasher?.hashed ?? 0) {
                    return .writeFailed(SystemError(problem.call, output, errno: problem.errno).description)
                }
                continue
            }
            if isEnded && (pos >= avail || isZip) {
                if isZip {
                    do {
                        return .extracted(try ZipExtractor.extract(part, into: extractInto, limit: limit, maxRatio: maxRatio, reserved: reserved))
                    } catch {
                        switch error {
                        case .bad(let why): return .failed(why)
                        case .write(let why): return .writeFailed(why)
                        }
                    }
                }
                if let plain { return .notCompressed(bytes: plain.bytes, sha256: plain.finish()) }
                // (A part shorter than two bytes was decided "plain" above.)
                guard let s = stream, let h = hasher else { return .failed("the part was never examined") }
                do { try s.finish() } catch { return .failed(error.message) }
                hasher = nil
                switch h.finish(size: s.produced) {
                case .success(let digest): return .inflated(bytes: s.produced, sha256: digest)
                case .failure(let e): return .writeFailed(e.description)
                }
            }
            // Nothing to read yet: sleep until the engine reports more.
            follower.waitForMore()
        }
    }
}

/// The decompressed output's way to the disk while it is written: its
/// writeback is started every `step`, so publishing's fsync has little left
/// to do; a range whose writeback was started a step earlier is waited for
/// and, once the hasher has read it, its pages are released from the page
/// cache. Nothing reads them again before the publication, and an output
/// of gigabytes would otherwise push the host's working set out of memory
/// (on a VM whose balloon hands free pages back to the host, fresh page
/// cache is also what costs most: a released page is reused at once).
struct OutputWriteback {
    static let step: Int64 = 8 << 20
    /// Writeback was started up to `hinted`; the step before ended at `previous`.
    private(set) var hinted: Int64 = 0
    private(set) var previous: Int64 = 0
    /// Pages before `released` were dropped (they are on disk).
    private(set) var released: Int64 = 0
    /// How the output's filesystem flushes, asked at the first wait.
    private var flush: CheckpointFlush?

    /// Returns the call that failed (a write-back error is the output's:
    /// the publication's fsync might not report it again).
    mutating func advance(fd: Int32, to produced: Int64, hashed: Int64) -> (call: String, errno: Int32)? {
        guard produced - hinted >= Self.step else { return nil }
        Writeback.start(fd, hinted, produced)
        let ready = min(previous, hashed)
        previous = hinted
        hinted = produced
        guard ready > released else { return nil }
        let flush = self.flush ?? CheckpointFlush.forFile(fd)
        self.flush = flush
        let failed = Writeback.wait(fd, released, ready, flush: flush)
        if failed != 0 {
            // Where sync_file_range is not supported the pages simply stay.
            guard [ENOSYS, EINVAL, ESPIPE].contains(failed) else { return ("sync_file_range", failed) }
            return nil
        }
        _ = posix_fadvise(fd, off_t(released), off_t(ready - released), POSIX_FADV_DONTNEED)
        released = ready
        return nil
    }
}
