import Glibc
import JobFetchCore

/// sd_notify(3) without libsystemd: datagrams to `$NOTIFY_SOCKET` (a path,
/// or an abstract socket written `@name`). `READY=1` once the daemon is set
/// up, `STATUS=` lines, `WATCHDOG=1` from the engine's loop, `STOPPING=1`.
/// Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.
public final class SystemdNotifier {
    private let fd: Int32
    private var address = sockaddr_un()
    private var length: socklen_t = 0
    /// Half of `$WATCHDOG_USEC` in seconds, when systemd expects pings from us.
    public let watchdogInterval: Double?

    public init(environment: [String: String]) {
        var interval: Double?
        if let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            interval = usec / 1e6 / 2
        }
        watchdogInterval = interval
        guard let path = environment["NOTIFY_SOCKET"], let built = Self.address(path) else { fd = -1; return }
        address = built.0
        length = built.1
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    public var isActive: Bool { fd >= 0 }

    /// The socket address for `$NOTIFY_SOCKET`: a filesystem path, or `@name` (abstract).
    static func address(_ path: String) -> (sockaddr_un, socklen_t)? {
        var bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.first == UInt8(ascii: "/") || bytes.first == UInt8(ascii: "@") else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return nil }
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        // An abstract name has no terminating NUL; a path does.
        let len = offset + bytes.count + (bytes[0] == 0 ? 0 : 1)
        return (addr, socklen_t(len))
    }

    /// Sends one message (`KEY=value` lines); a failure is not fatal.
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard fd >= 0 else { return false }
        let bytes = Array(message.utf8)
        let n = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return n == bytes.count
    }
}
