import CLinux
import Glibc

/// Keeps one job from crashing the daemon forever. A job whose input trips
/// a bug would crash it again after every restart, and no other job would
/// finish; so the engine notes, in a small shared file mapping, which job
/// it is handling, and a fatal signal's handler marks the mapping before the
/// process dies. Both survive the process (the page cache holds them; no
/// syscall per job). A job that was being handled at two crashes in a row is
/// failed at the next start instead of being tried a third time.
///
/// A crash is a fatal signal the process can see: a Swift trap (SIGILL,
/// SIGTRAP), SIGSEGV, SIGBUS, SIGFPE, SIGSYS, or SIGABRT (an abort, or
/// systemd's watchdog after a hang). SIGKILL (an operator, the OOM killer)
/// cannot be seen and is not held against the job at hand.
public final class CrashGuard {
    /// The layout of the mapping: the crash signal, the run's state, then
    /// two slots of a length byte pair and a `kind/id` key.
    enum Layout {
        static let size = 4096
        static let signal = 0
        static let state = 1
        static let current = 64
        static let previous = 1024
        static let slotBytes = 512
    }

    static let running = UInt8(ascii: "R")
    static let stopped = UInt8(ascii: "S")

    /// The job handled at this crash and at the one before: fail it.
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
        let current = Self.read(p, Layout.current)
        let previous = Self.read(p, Layout.previous)
        lastCrashSignal = signal != 0 ? Int32(signal) : nil
        var offender: JobKey?
        var suspect: String?
        if signal != 0 {
            // Crashed: the job at hand is a suspect; twice in a row, an offender.
            if let current, current == previous { offender = JobKey(parsing: current) } else { suspect = current }
        } else if state == Self.running {
            // Died unseen (SIGKILL, power): neither for nor against the suspect.
            suspect = previous
        }
        repeatOffender = offender
        Self.write(p, Layout.previous, suspect)
        Self.write(p, Layout.current, nil)
        p.storeBytes(of: 0, toByteOffset: Layout.signal, as: UInt8.self)
        p.storeBytes(of: Self.running, toByteOffset: Layout.state, as: UInt8.self)
        _ = msync(p, Layout.size, MS_SYNC)
        jf_install_crash_marker(p.assumingMemoryBound(to: UInt8.self))
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

    /// A clean stop: no job is held against anything at the next start.
    public func stoppedCleanly() {
        Self.write(base, Layout.previous, nil)
        Self.write(base, Layout.current, nil)
        base.storeBytes(of: Self.stopped, toByteOffset: Layout.state, as: UInt8.self)
        _ = msync(base, Layout.size, MS_SYNC)
    }

    static func read(_ p: UnsafeMutableRawPointer, _ offset: Int) -> String? {
        let n = Int(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        guard n > 0, n <= Layout.slotBytes - 2 else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: p + offset + 2, count: n), as: UTF8.self)
    }

    static func write(_ p: UnsafeMutableRawPointer, _ offset: Int, _ text: String?) {
        var bytes = Array((text ?? "").utf8.prefix(Layout.slotBytes - 2))
        bytes.withUnsafeMutableBytes { b in
            if let src = b.baseAddress { (p + offset + 2).copyMemory(from: src, byteCount: b.count) }
        }
        p.storeBytes(of: UInt16(bytes.count), toByteOffset: offset, as: UInt16.self)
    }
}
