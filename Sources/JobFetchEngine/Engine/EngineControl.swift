import Synchronization
import JobFetchCore

/// What other threads may ask of the engine: stop (the service group's
/// graceful shutdown on SIGTERM or SIGINT) or reload the config (SIGHUP).
/// Requests queue under a lock and an eventfd in the engine's poll set
/// wakes it, so they are handled between two turns of its loop, never in
/// the middle of one.
public final class EngineControl: Sendable {
    public enum Request: Sendable, Equatable {
        case stop
        case reload
    }

    /// The eventfd is signalled exactly while requests are queued: both
    /// change under this lock, so `take` costs no system call on the many
    /// turns of the loop with nothing queued.
    private let pending = Mutex<[Request]>([])
    let wakeup: EventFD

    public init() throws(SystemError) {
        wakeup = try EventFD(nonblocking: true, for: "engine control")
    }

    public func send(_ request: Request) {
        pending.withLock { queued in
            if queued.isEmpty { wakeup.signal() }
            queued.append(request)
        }
    }

    /// The requests sent since the last call, oldest first.
    func take() -> [Request] {
        pending.withLock { queued in
            guard !queued.isEmpty else { return [] }
            wakeup.clear()
            defer { queued = [] }
            return queued
        }
    }
}
