import Synchronization

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

    private let pending = Mutex<[Request]>([])
    let wakeup: EventFD

    public init() throws(SystemError) {
        wakeup = try EventFD(nonblocking: true, for: "engine control")
    }

    public func send(_ request: Request) {
        pending.withLock { $0.append(request) }
        wakeup.signal()
    }

    /// The requests sent since the last call, oldest first.
    func take() -> [Request] {
        wakeup.clear()
        return pending.withLock { queued in
            defer { queued = [] }
            return queued
        }
    }
}
