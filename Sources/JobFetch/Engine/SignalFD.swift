import CLinux
import Glibc

/// SIGTERM, SIGINT and SIGHUP delivered as readable events on a descriptor
/// the event loop polls, instead of handlers running at arbitrary points.
/// `blockSignals()` must run before any thread starts, so every thread
/// inherits the mask.
public final class SignalFD {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]
    public let fd: Int32

    public static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    public init() throws(SystemError) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in Self.handled { sigaddset(&set, s) }
        fd = signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("signalfd", "SIGTERM/SIGINT/SIGHUP") }
    }

    deinit { close(fd) }

    /// Signals received since the last call.
    public func read() -> [Int32] {
        var out: [Int32] = []
        var info = signalfd_siginfo()
        while Glibc.read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            out.append(Int32(info.ssi_signo))
        }
        return out
    }
}
