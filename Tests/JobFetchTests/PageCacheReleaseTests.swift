import CLinux
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore
@testable import JobFetchTransfer

/// A download's part and its decompressed output leave the page cache once
/// they are on disk and were read: asked of the kernel itself (mincore).
@Suite struct PageCacheReleaseTests {
    static let page = Int64(sysconf(Int32(_SC_PAGESIZE)))
    static let mib: Int64 = 1 << 20

    /// Pages of `path` in the page cache in `from..<to` (the file mapped, not read).
    func resident(_ path: String, _ from: Int64, _ to: Int64) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let length = Int(to)
        let map = try #require(mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0))
        try #require(map != MAP_FAILED)
        defer { munmap(map, length) }
        var vec = [UInt8](repeating: 0, count: (length + Int(Self.page) - 1) / Int(Self.page))
        try #require(mincore(map, length, &vec) == 0)
        return vec[Int(from / Self.page)...].filter { $0 & 1 == 1 }.count
    }

    func pages(_ from: Int64, _ to: Int64) -> Int { Int((to - from) / Self.page) }

    /// 40 MiB written through a part's stream, then one more checkpoint; the reader has read `consumed`.
    func writePart(_ path: String, consumed: Int64) throws -> Part {
        let reader = Atomic<Int64>(consumed)
        let (part, stream) = try Part.fresh(path, length: 40 * Self.mib, consumed: { reader.load(ordering: .relaxed) })
        let chunk = [UInt8](repeating: 7, count: Int(Self.mib))
        for _ in 0..<40 { #expect(chunk.withUnsafeBytes { stream.write($0) }) }
        part.checkpointAndWait()
        part.checkpointAndWait()
        #expect(part.error == nil)
        return part
    }

    @Test func aPartsPagesOnDiskAndReadLeaveThePageCache() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let part = try writePart(dir + "/read", consumed: .max)
        let prefix = try #require(part.sidecar).durableBytes
        #expect(prefix == 40 * Self.mib)
        #expect(try resident(dir + "/read", 0, prefix) == 0)
    }

    @Test func aPartKeepsWhatTheReaderHasNotReadYet() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        // The reader is at 8 MiB: only the pages before it go.
        _ = try writePart(dir + "/behind", consumed: 8 * Self.mib)
        #expect(try resident(dir + "/behind", 0, 8 * Self.mib) == 0)
        #expect(try resident(dir + "/behind", 8 * Self.mib, 40 * Self.mib) == pages(8 * Self.mib, 40 * Self.mib))
        // Nothing read: everything stays.
        _ = try writePart(dir + "/unread", consumed: 0)
        #expect(try resident(dir + "/unread", 0, 40 * Self.mib) == pages(0, 40 * Self.mib))
    }

    /// 48 MiB of output written 1 MiB at a time, the hasher at `hashed` (nil: as far as written).
    func writeOutput(_ path: String, hashed: Int64?) throws -> OutputWriteback {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        var writeback = OutputWriteback()
        let chunk = [UInt8](repeating: 3, count: Int(Self.mib))
        var produced: Int64 = 0
        for _ in 0..<48 {
            try chunk.withUnsafeBytes { try FileIO.writeAll(fd: fd, $0, at: produced, path: path) }
            produced += Self.mib
            #expect(writeback.advance(fd: fd, to: produced, hashed: hashed ?? produced) == nil)
        }
        return writeback
    }

    @Test func theOutputLeavesThePageCacheOnceWrittenBackAndHashed() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let hashed = try writeOutput(dir + "/out", hashed: nil)
        // A step's writeback is waited for a step later: 32 MiB of 48 are released.
        #expect(hashed.released == 32 * Self.mib)
        #expect(try resident(dir + "/out", 0, hashed.released) == 0)
        #expect(try resident(dir + "/out", hashed.released, 48 * Self.mib) == pages(hashed.released, 48 * Self.mib))
        // The hasher at 4 MiB: the pages it has still to read stay.
        let behind = try writeOutput(dir + "/behind", hashed: 4 * Self.mib)
        #expect(behind.released == 4 * Self.mib)
        #expect(try resident(dir + "/behind", 4 * Self.mib, 48 * Self.mib) == pages(4 * Self.mib, 48 * Self.mib))
    }
}

/// A checkpoint's flush follows the part's filesystem (see `CheckpointFlush`).
@Suite struct CheckpointFlushTests {
    @Test func onlyExt4AndXFSTrustARangeFlush() {
        #expect(CheckpointFlush.forFilesystem(magic: 0xEF53) == .dataRange)
        #expect(CheckpointFlush.forFilesystem(magic: 0x5846_5342) == .dataRange)
        #expect(CheckpointFlush.forFilesystem(magic: 0x9123_683E) == .wholeFile, "btrfs")
        #expect(CheckpointFlush.forFilesystem(magic: 0x0102_1994) == .wholeFile, "tmpfs")
        #expect(CheckpointFlush.forFilesystem(magic: 0x6969) == .wholeFile, "NFS")
    }

    @Test func aPartElsewhereIsCheckpointedWithFdatasync() throws {
        guard jf_path_fs_type("/dev/shm") == 0x0102_1994 else { return }  // no tmpfs here
        let dir = "/dev/shm/jobfetch-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileIO.makeDirectories(dir)
        defer { try? FileIO.removeTree(dir) }
        let (part, stream) = try Part.fresh(dir + "/p", length: 20 << 20)
        #expect(part.flush == .wholeFile)
        let chunk = [UInt8](repeating: 1, count: 1 << 20)
        for _ in 0..<20 { #expect(chunk.withUnsafeBytes { stream.write($0) }) }
        part.checkpointAndWait()
        part.checkpointAndWait()
        #expect(part.error == nil)
        #expect(PartSidecar.load(part: dir + "/p")?.synced == 20 << 20)
    }
}

extension Part {
    /// A part at `path` and its stream, which began a fresh 200 of `length` bytes with an ETag.
    static func fresh(_ path: String, length: Int64, consumed: (@Sendable () -> Int64)? = nil,
                      flusher: CheckpointQueue = CheckpointQueue()) throws -> (Part, PartWriter) {
        let part = Part(path: path, limit: 1 << 30, resume: nil, observer: nil, consumed: consumed, flusher: flusher)
        let stream = part.firstWriter()
        #expect(stream.begin(status: 200, headers: ["etag": "\"e\"", "content-length": "\(length)"],
                             url: try ParsedURL("https://files.example/x.bin")))
        return (part, stream)
    }

    /// A checkpoint as the engine starts one, waited for as the end of a connection waits for it.
    func checkpointAndWait() {
        settle()
        checkpoint()
        settle()
    }
}

/// Checkpoints wait for the disk on the queue's thread: while it is held
/// the connection goes on writing, and nothing is recorded as durable
/// before the queue says so.
@Suite struct CheckpointQueueTests {
    @Test func writesGoOnWhileTheCheckpointWaitsAndItIsRecordedOnceItIsDone() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let queue = CheckpointQueue(label: "test.checkpoint")
        let gate = DispatchSemaphore(value: 0)
        let opened = Atomic<Bool>(false)
        queue.run { gate.wait() }
        // Only a safety net, should the writes wait for the queue: the test then fails below instead of hanging.
        DispatchQueue.global().asyncAfter(deadline: .now() + 20) { if !opened.exchange(true, ordering: .relaxed) { gate.signal() } }

        let path = dir + "/p"
        let (part, stream) = try Part.fresh(path, length: 48 << 20, flusher: queue)
        let chunk = [UInt8](repeating: 3, count: 1 << 20)
        // Three checkpoints' worth (one every 16 MiB), and one asked for outright.
        for _ in 0..<48 { #expect(chunk.withUnsafeBytes { stream.write($0) }) }
        part.checkpoint()
        let waited = opened.load(ordering: .relaxed)
        #expect(!waited, "the writes waited for the held queue")
        #expect(PartSidecar.load(part: path)?.synced == 0, "nothing is recorded before its flush is done")
        #expect(part.sidecar?.synced == 0)

        if !opened.exchange(true, ordering: .relaxed) { gate.signal() }
        part.settle()
        // The first checkpoint only started the writeback; the next two wait for it and for the rest.
        part.checkpointAndWait()
        part.checkpointAndWait()
        #expect(part.error == nil)
        #expect(part.sidecar?.synced == 48 << 20)
        #expect(PartSidecar.load(part: path)?.synced == 48 << 20)
    }

    /// A flush that failed on the queue is the part's error: nothing after it
    /// is recorded as durable, not even by the durable end of a shutdown
    /// (whose fdatasync would succeed: the failure was reported once, to the queue).
    @Test func aFailedFlushIsNeverRecordedAsDurable() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let queue = CheckpointQueue(label: "test.failing") { SystemError("sync_file_range", $0, errno: EIO) }
        let path = dir + "/p"
        let (part, stream) = try Part.fresh(path, length: 40 << 20, flusher: queue)
        let chunk = [UInt8](repeating: 5, count: 1 << 20)
        for _ in 0..<20 { _ = chunk.withUnsafeBytes { stream.write($0) } }
        part.checkpointAndWait()
        part.checkpointAndWait()
        #expect(part.error?.description.contains("sync_file_range") == true)
        stream.finish(durably: true)
        let saved = try #require(PartSidecar.load(part: path))
        #expect(saved.synced == 0, "bytes whose flush failed were recorded as durable")
        #expect(saved.boot == nil, "the file's length must not be trusted on this boot either")
    }
}

/// A range's writeback is waited for with the page cache asked between
/// sleeps (see `Writeback`), and the range is on disk when it returns.
@Suite struct WritebackWaitTests {
    /// Pages of `from..<to` dirty and under writeback, as the kernel counts them.
    func unwritten(_ fd: Int32, _ from: Int64, _ to: Int64) throws -> UInt64 {
        var cached: UInt64 = 0, dirty: UInt64 = 0, writeback: UInt64 = 0
        try #require(jf_cachestat(fd, UInt64(from), UInt64(to - from), &cached, &dirty, &writeback) == 0)
        return dirty + writeback
    }

    @Test func aWaitedRangeIsOnDiskAndTheRestStaysDirty() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let fd = open(dir + "/f", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0
        guard jf_cachestat(fd, 0, 0, &a, &b, &c) == 0 else { return }  // Linux before 6.5
        let mib: Int64 = 1 << 20
        let chunk = [UInt8](repeating: 5, count: Int(mib))
        for i in 0..<32 { try chunk.withUnsafeBytes { try FileIO.writeAll(fd: fd, $0, at: Int64(i) * mib, path: dir + "/f") } }
        // Freshly written: dirty until the flusher's 30 s, or a wait.
        #expect(try unwritten(fd, 0, 32 * mib) > 0)
        let flush = CheckpointFlush.forFile(fd)
        #expect(Writeback.wait(fd, 0, 16 * mib, flush: flush) == 0)
        #expect(try unwritten(fd, 0, 16 * mib) == 0)
        #expect(try unwritten(fd, 16 * mib, 32 * mib) > 0, "a wait writes back its range, not the file")
        #expect(Writeback.wait(fd, 16 * mib, 32 * mib, flush: flush) == 0)
        #expect(try unwritten(fd, 0, 32 * mib) == 0)
        #expect(Writeback.wait(fd, 0, 32 * mib, flush: flush) == 0, "nothing left to wait for")
    }

    @Test func aDescriptorThatIsNoFileReportsItsError() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(Writeback.wait(fds[1], 0, 4096, flush: CheckpointFlush.forFile(fds[1])) == ESPIPE)
    }
}
