import Glibc

/// Where time comes from. Everything that decides by time is handed one:
/// the daemon runs on `SystemClock`, the simulator on a virtual clock it
/// moves itself, so a seeded run is the same run every time.
public protocol JobClock: AnyObject, Sendable {
    /// Wall-clock seconds since the epoch: what the store records.
    func now() -> Double
    /// Seconds on a clock that never goes back: what timeouts measure.
    func monotonic() -> Double
}

/// The machine's own clocks (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`).
public final class SystemClock: JobClock {
    public static let shared = SystemClock()
    public init() {}
    public func now() -> Double { Self.now() }
    public func monotonic() -> Double { Self.monotonic() }

    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
