import Foundation
import Glibc
import Synchronization
import JobFetchCore

/// Follows a file that another thread is still writing, on a worker thread
/// of its own: the writer says how far the file is good (`advance`), that
/// it is whole (`end`), or that it is abandoned (`cancel`); the worker reads
/// up to there and sleeps on an eventfd for more. Its outcome is kept, and
/// `doneFD` becomes readable when it is (the engine polls it with libcurl's
/// sockets). The decompressor and the hasher both run on one of these.
final class FileFollower<Outcome: Sendable>: Sendable {
    public let path: String
    private let available = Atomic<Int64>(0)
    private let ended = Atomic<Bool>(false)
    private let cancelled = Atomic<Bool>(false)
    private let wakeUp: EventFD
    private let done: EventFD
    private let result = Mutex<Outcome?>(nil)

    /// `blockingDone`: the owner waits for the outcome with `waitForOutcome`
    /// (the hasher); otherwise `doneFD` is polled (the decompressor), and
    /// `waitForOutcome`, which clears it, must not be called.
    public init(path: String, blockingDone: Bool) throws(SystemError) {
        self.path = path
        wakeUp = try EventFD(nonblocking: true, for: path)
        done = try EventFD(nonblocking: !blockingDone, for: path)
    }

    /// Runs `work` on a thread named `name`, once per follower (from inside: a name set before
    /// start() is not applied on Linux); a crash on it is held against `job`
    /// (`CrashGuard`). The thread holds what `work` captures until it returns.
    public func start(name: String, job: String?, _ work: @escaping @Sendable () -> Outcome) {
        Thread { [self] in
            Thread.current.name = name
            CrashGuard.attributeThread(to: job)
            let outcome = work()
            result.withLock { $0 = outcome }
            done.signal()
        }.start()
    }

    public var doneFD: Int32 { done.fd }
    public var outcome: Outcome? { result.withLock { $0 } }

    /// Blocks the caller until the worker has its outcome.
    public func waitForOutcome() -> Outcome? {
        done.wait(timeoutMs: -1)
        return outcome
    }

    // MARK: the writer's side

    /// The file is good up to `size` bytes (`wake: false` when the caller wakes the worker itself, after more state).
    public func advance(to size: Int64, wake: Bool = true) {
        available.store(size, ordering: .sequentiallyConsistent)
        if wake { self.wake() }
    }

    /// The file is whole at `size` bytes: the worker drains it and finishes.
    public func end(at size: Int64) {
        available.store(size, ordering: .sequentiallyConsistent)
        ended.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    public func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    public func wake() { wakeUp.signal() }

    // MARK: the worker's side

    public var size: Int64 { available.load(ordering: .sequentiallyConsistent) }
    public var isEnded: Bool { ended.load(ordering: .sequentiallyConsistent) }
    public var isCancelled: Bool { cancelled.load(ordering: .sequentiallyConsistent) }

    /// Sleeps until the writer reports more (a second at most).
    public func waitForMore() { wakeUp.wait(timeoutMs: 1000) }
}
