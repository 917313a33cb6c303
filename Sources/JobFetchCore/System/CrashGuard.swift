import CLinux
import Glibc

/// Keeps a job from crashing the daemon forever. A job whose input trips a
/// bug would crash it again after every restart, and no other job would
/// finish; so the engine notes, in a small shared file mapping, which job it
/// is handling, a worker thread (decompression, hashing, zip extraction)
/// notes the job it works for, and a fatal signal's handler marks the
/// mapping (with the crashing worker's job) before the process dies. Both
/// survive the process (the page cache holds them; no syscall per job). A
/// job at hand at two crashes since the last clean stop is failed at the
/// next start instead of being tried a third time; several such jobs taking
/// turns are each counted.
///
/// A crash is a fatal signal the process can see: a Swift trap (SIGILL,
/// SIGTRAP), SIGSEGV, SIGBUS, SIGFPE, SIGSYS, or SIGABRT (an abort, or
/// systemd's watchdog after a hang). SIGKILL (an operator, the OOM killer)
/// cannot be seen and is not held against the job at hand.
public final class CrashGuard {
    /// The layout of the mapping: the crash signal, the run's state, the
    /// engine's job and the crashing worker's job (each a length and a key),
    /// then the suspects (a crash count, a length and a key each).
    enum Layout {
        static let size = 4096
        static let signal = 0
        static let state = 1
        static let current = 64
        static let worker = 576
        static let slotBytes = 480
        static let suspects = 1088
        static let suspectSlots = 6
    }

    static let running = UInt8(ascii: "R")
    static let stopped = UInt8(ascii: "S")

    /// The job at hand at two crashes since the last clean stop: fail it.
    public let repeatOffender: JobKey?
    /// The signal of the crash that ended the last run, if one did.
    public let lastCrashSignal: Int32?
    private let base: UnsafeMutableRawPointer

    public init(stateDir: String) throws(SystemError) {
        let path = stateDir + "/crash-guard"
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(Layout.size)) == 0 else { throw SystemError("truncate", path) }
        guard let p = mmap(nil, Layout.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw SystemError("mmap", path)
        }
        base = p
        let signal = p.load(fromByteOffset: Layout.signal, as: UInt8.self)
        let state = p.load(fromByteOffset: Layout.state, as: UInt8.self)
        // The crashing thread's own job, else what the engine was handling.
        let blamed = signal != 0 ? Self.read(p, Layout.worker) ?? Self.read(p, Layout.current) : nil
        var suspects = state == Self.stopped ? [] : Self.readSuspects(p)
        var offender: JobKey?
        if let blamed {
            let count = (suspects.first { $0.key == blamed }?.count ?? 0) + 1
            suspects.removeAll { $0.key == blamed }
            if count >= 2 {
                offender = JobKey(parsing: blamed)
            } else {
                suspects.insert((blamed, count), at: 0)
            }
        }
        lastCrashSignal = signal != 0 ? Int32(signal) : nil
        repeatOffender = offender
        Self.writeSuspects(p, Array(suspects.prefix(Layout.suspectSlots)))
        Self.write(p, Layout.current, nil)
        Self.write(p, Layout.worker, nil)
        p.storeBytes(of: 0, toByteOffset: Layout.signal, as: UInt8.self)
        p.storeBytes(of: Self.running, toByteOffset: Layout.state, as: UInt8.self)
        _ = msync(p, Layout.size, MS_SYNC)
        jf_install_crash_marker(p.assumingMemoryBound(to: UInt8.self), Int32(Layout.worker))
    }

    /// The engine is about to run code for `key`.
    @inline(__always) public func begin(_ key: JobKey) { Self.write(base, Layout.current, key.description) }

    /// It is done with that job.
    @inline(__always) public func end() { base.storeBytes(of: 0, toByteOffset: Layout.current, as: UInt16.self) }

    /// Runs `body` as work for `key`.
    @inline(__always) public func handling<T>(_ key: JobKey, _ body: () throws -> T) rethrows -> T {
        begin(key)
        defer { end() }
        return try body()
    }

    /// The calling (worker) thread works for `job` from now on: a crash on it is that job's.
    public static func attributeThread(to job: String?) {
        var bytes = Array((job ?? "").utf8)
        bytes.withUnsafeMutableBytes { b in
            b.withMemoryRebound(to: CChar.self) { c in jf_crash_set_thread_job(c.baseAddress, Int32(c.count)) }
        }
    }

    /// A clean stop: no job is held against anything at the next start.
    public func stoppedCleanly() {
        Self.writeSuspects(base, [])
        Self.write(base, Layout.current, nil)
        base.storeBytes(of: Self.stopped, toByteOffset: Layout.state, as: UInt8.self)
        _ = msync(base, Layout.size, MS_SYNC)
    }

    static func read(_ p: UnsafeMutableRawPointer, _ offset: Int) -> String? {
        let n = Int(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        guard n > 0, n <= Layout.slotBytes - 3 else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: p + offset + 2, count: n), as: UTF8.self)
    }

    static func write(_ p: UnsafeMutableRawPointer, _ offset: Int, _ text: String?) {
        var bytes = Array((text ?? "").utf8.prefix(Layout.slotBytes - 3))
        bytes.withUnsafeMutableBytes { b in
            if let src = b.baseAddress { (p + offset + 2).copyMemory(from: src, byteCount: b.count) }
        }
        p.storeBytes(of: UInt16(bytes.count), toByteOffset: offset, as: UInt16.self)
    }

    /// A suspect slot: its crash count, then a key as `write` lays it out.
    static func readSuspects(_ p: UnsafeMutableRawPointer) -> [(key: String, count: Int)] {
        (0..<Layout.suspectSlots).compactMap { i in
            let slot = Layout.suspects + i * Layout.slotBytes
            let count = Int(p.load(fromByteOffset: slot, as: UInt8.self))
            guard count > 0, let key = read(p, slot + 1) else { return nil }
            return (key, count)
        }
    }

    static func writeSuspects(_ p: UnsafeMutableRawPointer, _ suspects: [(key: String, count: Int)]) {
        for i in 0..<Layout.suspectSlots {
            let slot = Layout.suspects + i * Layout.slotBytes
            let s = i < suspects.count ? suspects[i] : nil
            write(p, slot + 1, s?.key)
            p.storeBytes(of: UInt8(min(s?.count ?? 0, 255)), toByteOffset: slot, as: UInt8.self)
        }
    }
}
