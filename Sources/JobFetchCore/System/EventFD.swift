import CLinux
import Glibc

/// A Linux eventfd: one thread signals, another sleeps in `poll` until it
/// is signalled (or adds it to the engine's poll set). Closed on deinit.
public final class EventFD: Sendable {
    public let fd: Int32

    public init(nonblocking: Bool, for path: String) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | (nonblocking ? Int32(EFD_NONBLOCK) : 0))
        guard fd >= 0 else { throw SystemError("eventfd", path) }
        self.fd = fd
    }

    deinit { close(fd) }

    public func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Resets the count (without waiting when the descriptor is nonblocking).
    public func clear() {
        var count: UInt64 = 0
        _ = Syscall.uninterrupted { read(fd, &count, 8) }
    }

    /// Sleeps until signalled (at most `timeoutMs`), then clears the count.
    public func wait(timeoutMs: Int32) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, timeoutMs)
        clear()
    }
}
