import CLinux
import Dispatch
import Glibc
import Synchronization
import JobFetchCore

/// Where a part waits for the disk, so the engine thread, which reads every
/// socket, does not while its download runs. A checkpoint's writeback
/// wait (a killable one, see `Writeback`), its sidecar's fsync and the release of its page cache run here; so
/// does starting the writeback of what just arrived (`sync_file_range` may
/// block when the device's queue is full). While the disk stalls the engine
/// goes on receiving into the page cache, so the sockets do not fill up and
/// a kill in the stall finds the bytes in the file, not in buffers it
/// loses. Each part has a serial queue of its own (work of one part stays
/// in order; one slow file holds up no other download's checkpoints); the
/// engine waits for it only where the file or its sidecar changes under it
/// (`Part.settle`): a fresh body, a split, a connection's end.
package final class CheckpointQueue: Sendable {
    private let queue: DispatchQueue
    /// A flush's error before it is tried (tests make the disk fail with it).
    let fault: (@Sendable (String) -> SystemError?)?

    package init(label: String = "jobfetch.checkpoint", fault: (@Sendable (String) -> SystemError?)? = nil) {
        queue = DispatchQueue(label: label)
        self.fault = fault
    }

    package func run(_ work: @escaping @Sendable () -> Void) { queue.async(execute: work) }
}

/// A descriptor of the part for work on the checkpoint queue: its own
/// (dup), closed when the last work holding it is done, so the part may
/// close or reopen its file meanwhile.
final class SharedFD: Sendable {
    let fd: Int32

    init?(dup of: Int32) {
        fd = fcntl(of, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { return nil }
    }

    deinit { close(fd) }

    /// Starts the writeback of `from..<to` (`sync_file_range`, not waited for).
    func startWriteback(_ from: Int64, _ to: Int64) { Writeback.start(fd, from, to) }
}

/// What one checkpoint does off the engine thread: wait for the ranges
/// whose writeback the previous one started, record them in the sidecar,
/// release what is durable and read from the page cache, start the
/// writeback of what came since.
struct FlushJob: Sendable {
    struct Span: Sendable { var from: Int64, to: Int64 }

    let file: SharedFD
    let path: String
    let flush: CheckpointFlush
    /// Written ranges whose writeback was started; empty: nothing to record.
    let waits: [Span]
    /// The sidecar that says they are durable, saved once they are.
    let record: PartSidecar?
    /// How far the reader has read (nil: nothing reads the part) and how far the cache was released.
    let consumed: (@Sendable () -> Int64)?
    let released: Int64
    let starts: [Span]
    let fault: (@Sendable (String) -> SystemError?)?

    func run() -> FlushOutcome {
        var outcome = FlushOutcome(error: nil, saved: nil, released: released)
        if !waits.isEmpty, let record {
            if let error = fault?(path) ?? waitForWaits() { outcome.error = error; return outcome }
            do { try record.save(part: path) } catch { outcome.error = error; return outcome }
            outcome.saved = record
            outcome.released = releaseCache(upTo: record.durableBytes)
        }
        for s in starts { file.startWriteback(s.from, s.to) }
        return outcome
    }

    private func waitForWaits() -> SystemError? {
        if flush == .wholeFile { return fdatasync(file.fd) == 0 ? nil : SystemError("fdatasync", path) }
        for s in waits {
            let failed = Writeback.wait(file.fd, s.from, s.to, flush: flush)
            guard failed != 0 else { continue }
            // An I/O error was this flush's: a later fdatasync would not report it again.
            guard [ENOSYS, EINVAL, ESPIPE].contains(failed) else { return SystemError("sync_file_range", path, errno: failed) }
            return fdatasync(file.fd) == 0 ? nil : SystemError("fdatasync", path)
        }
        return nil
    }

    /// Releases the page cache of what is on disk (the `durable` bytes from 0) and was read: nothing
    /// reads it again before the publication, and a download of gigabytes
    /// would otherwise push the host's working set out of memory (on a VM
    /// whose balloon hands free pages back to the host, fresh page cache is
    /// also what costs most: a released page is reused at once). A resume on
    /// this boot still starts from the file's length: released pages were
    /// clean, on disk. Returns how far the cache is released now.
    private func releaseCache(upTo durable: Int64) -> Int64 {
        guard let consumed else { return released }
        let upTo = min(durable, consumed())
        if upTo > released {
            _ = posix_fadvise(file.fd, off_t(released), off_t(upTo - released), POSIX_FADV_DONTNEED)
        }
        // After a fresh body the reader starts again from 0, and so does this.
        return upTo
    }
}

struct FlushOutcome: Sendable {
    var error: SystemError?
    /// The sidecar as saved (nil: none was).
    var saved: PartSidecar?
    var released: Int64
}

/// A checkpoint handed to the queue, for the engine to look at later.
final class FlushTicket: Sendable {
    private let outcome = Mutex<FlushOutcome?>(nil)
    private let done = DispatchSemaphore(value: 0)

    func complete(_ o: FlushOutcome) {
        outcome.withLock { $0 = o }
        done.signal()
    }

    /// Its outcome, nil while it runs.
    var result: FlushOutcome? { outcome.withLock { $0 } }

    func wait() -> FlushOutcome? {
        if let r = result { return r }
        done.wait()
        return result
    }
}
