import Glibc
import Synchronization

/// Jitter needs spread, not secrecy: a SplitMix64 seeded once from the
/// system, instead of a `getrandom` system call for every poll.
public enum Jitter {
    private static let state = Mutex(SplitMix64(seed: UInt64.random(in: 0...UInt64.max)))

    /// A uniform value in `range`.
    public static func next(in range: ClosedRange<Double>) -> Double {
        let unit = state.withLock { $0.unit() }
        return range.lowerBound + unit * (range.upperBound - range.lowerBound)
    }
}

/// Poll and retry schedules. Jitter spreads many jobs of one API apart.
public struct Backoff: Sendable {
    public var base: Double
    public var cap: Double

    public init(base: Double, cap: Double) {
        self.base = base
        self.cap = cap
    }

    /// The wait after the `n`th "still running" answer (n ≥ 1): grows by
    /// half each time from `base` up to `cap`, ±10 %.
    public func pollDelay(after n: Int, jitter: Double = Jitter.next(in: -1...1)) -> Double {
        let raw = base * pow(1.5, Double(max(0, n - 1)))
        return min(raw, cap) * (1 + 0.1 * jitter)
    }

    /// The wait after the `n`th consecutive failure (n ≥ 1): doubles from
    /// `base` up to `cap`, scaled by a random factor in [0.5, 1].
    public func retryDelay(after n: Int, jitter: Double = Jitter.next(in: 0...1)) -> Double {
        let raw = base * pow(2, Double(min(max(0, n - 1), 30)))
        return min(raw, cap) * (0.5 + 0.5 * jitter)
    }
}

/// Requests per second to one API: a token bucket holding one second's worth.
public struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    var tokens: Double
    var last: Double

    public init(_ limit: RateLimit, now: Double) {
        rate = limit.perSecond
        burst = max(1, limit.requests)
        tokens = burst
        last = now
    }

    /// Takes a token and returns nil, or returns how long until one is free.
    public mutating func take(now: Double) -> Double? {
        tokens = min(burst, tokens + (now - last) * rate)
        last = now
        if tokens >= 1 { tokens -= 1; return nil }
        return (1 - tokens) / rate
    }

    /// The bucket for `limit`: this one when the limit is the same; for a
    /// new one (the kind's share changed), the tokens saved so far are kept
    /// up to the new burst, never topped up.
    public func rescaled(_ limit: RateLimit) -> TokenBucket {
        var b = TokenBucket(limit, now: last)
        b.tokens = min(b.burst, tokens)
        return b
    }
}

extension RateLimit {
    /// One daemon's share when `nodes` share the limit.
    public func share(_ nodes: Int) -> RateLimit { RateLimit(requests: requests / Double(max(1, nodes)), per: per) }
}

extension KindConfig {
    /// The kind's schedule: from `poll_interval` up to `max_poll_interval`.
    public var backoff: Backoff { Backoff(base: pollInterval, cap: maxPollInterval) }
}
