import Dispatch
import Foundation
import Glibc
import JobFetchCore
import JobFetchEngine
import JobFetchStore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The engine as a member of the service group. Its loop blocks in
/// `curl_multi_poll`, so it runs on a thread of its own rather than holding
/// one of the few cooperative threads; the group's graceful shutdown (SIGTERM,
/// SIGINT) and task cancellation both become a stop request on its control.
struct EngineService: Service {
    /// The engine is used by one thread at a time: built on the main thread,
    /// then handed to its loop thread and never touched here again.
    private final class Handoff: @unchecked Sendable {
        let engine: Engine
        init(_ engine: Engine) { self.engine = engine }
    }

    private let handoff: Handoff
    private let control: EngineControl

    init(engine: Engine) {
        handoff = Handoff(engine)
        control = engine.control
    }

    func run() async {
        let control = control
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await Self.onThread(handoff)
            } onGracefulShutdown: {
                control.send(.stop)
            }
        } onCancel: {
            control.send(.stop)
        }
    }

    /// Runs the engine's loop on a new thread (named, as the decompress and
    /// hash workers are, so `top -H` tells it apart from Dispatch's) and
    /// resumes when it returns.
    private static func onThread(_ handoff: Handoff) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread {
                Thread.current.name = "jf-engine"
                handoff.engine.run()
                done.resume()
            }.start()
        }
    }
}

/// SIGHUP reloads the config; the engine does it between two turns of its
/// loop. The sequence is registered before the config is first read, and
/// buffers what arrives until this service iterates it.
struct ReloadService: Service {
    let hangups: UnixSignalsSequence
    let control: EngineControl

    func run() async {
        for await _ in hangups.cancelOnGracefulShutdown() {
            control.send(.reload)
        }
    }
}

enum Signals {
    /// Runs first, before any thread exists. A parent may have left signals
    /// blocked (a careless supervisor, a test runner): unblock the three the
    /// daemon answers, or they would never arrive. Until the service group
    /// listens, SIGHUP is ignored rather than left to kill the daemon (there
    /// is nothing to reload before the config has been read); an early
    /// SIGTERM or SIGINT still ends it at once, before any work has begun.
    static func prepare() {
        signal(SIGHUP, SIG_IGN)
        // Hooks are reaped for their exit status: an ignored SIGCHLD inherited from whoever started us would lose it.
        signal(SIGCHLD, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

/// Runs async work from the synchronous entry point and waits for it. The
/// main thread stays a plain thread with the signals unblocked, where
/// Dispatch's handlers (installed for the service group) receive them; an
/// async `main` would instead park it in Dispatch's `sigsuspend`, where a
/// SIGHUP that arrives before any handler exists takes its default action.
enum GroupRunner {
    static func block<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Mutex<Result<T, any Error>>(.failure(CancellationError()))
        let done = DispatchSemaphore(value: 0)
        // Medium (default) priority: from the main thread a task would inherit a
        // higher one, and Dispatch would try to renice its worker threads
        // below 0, which an unprivileged service may not (a syslog line each).
        Task(priority: .medium) {
            let result: Result<T, any Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0 }.get()
    }
}
