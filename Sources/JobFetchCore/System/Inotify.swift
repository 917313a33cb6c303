import Glibc

/// A non-blocking inotify instance. The engine polls its descriptor; tests
/// use `wait(for:)` to block on a file appearing rather than sleeping.
public final class Inotify {
    public struct Event: Sendable {
        public var watch: Int32
        public var mask: UInt32
        public var name: String
    }

    public let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init() throws(SystemError) {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw SystemError("inotify_init1", "") }
    }

    deinit { close(fd) }

    public func watch(_ path: String, mask: UInt32) throws(SystemError) -> Int32 {
        let wd = inotify_add_watch(fd, path, mask)
        guard wd >= 0 else { throw SystemError("inotify_add_watch", path) }
        return wd
    }

    public func unwatch(_ wd: Int32) { inotify_rm_watch(fd, wd) }

    /// Everything queued now; empty when nothing is.
    public func read() throws(SystemError) -> [Event] {
        var events: [Event] = []
        while true {
            let n = Syscall.uninterrupted { buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if n < 0 {
                if errno == EAGAIN { return events }
                throw SystemError("read", "inotify")
            }
            if n == 0 { return events }
            var offset = 0
            buffer.withUnsafeBytes { raw in
                while offset + MemoryLayout<inotify_event>.size <= n {
                    let base = raw.baseAddress! + offset
                    let wd = base.loadUnaligned(as: Int32.self)
                    let mask = base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                    let len = Int(base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    var name = ""
                    if len > 0 {
                        let bytes = raw[nameStart..<nameStart + len].prefix { $0 != 0 }
                        name = String(decoding: bytes, as: UTF8.self)
                    }
                    events.append(Event(watch: wd, mask: mask, name: name))
                    offset = nameStart + len
                }
            }
        }
    }

    /// Blocks until `name` appears in `directory` (created, or moved in),
    /// or `timeout` seconds pass. True if it is there.
    public static func wait(for name: String, in directory: String, timeout: Double) throws(SystemError) -> Bool {
        try wait(until: { FileIO.exists(directory + "/" + name) }, in: directory,
                 mask: UInt32(IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE), timeout: timeout)
    }

    /// Waits until `name` is gone from `directory` (taken by its reader).
    public static func wait(forRemovalOf name: String, in directory: String, timeout: Double) throws(SystemError) -> Bool {
        try wait(until: { !FileIO.exists(directory + "/" + name) }, in: directory,
                 mask: UInt32(IN_DELETE | IN_MOVED_FROM), timeout: timeout)
    }

    /// Waits, on inotify events in `directory`, until `condition` holds or `timeout` passes.
    public static func wait(until condition: () -> Bool, in directory: String, mask: UInt32, timeout: Double) throws(SystemError) -> Bool {
        let ino = try Inotify()
        _ = try ino.watch(directory, mask: mask)
        let deadline = SystemClock.monotonic() + timeout
        while true {
            if condition() { return true }
            let left = deadline - SystemClock.monotonic()
            if left <= 0 { return false }
            var p = pollfd(fd: ino.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(min(left, 3600) * 1000) + 1)
            _ = try ino.read()
        }
    }
}
