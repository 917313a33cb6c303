import Foundation
import Glibc
import Synchronization
import JobFetchCore

/// Removes files the daemon no longer needs without making the engine wait.
///
/// Unlinking a large file is not free: ext4 frees its extents and drops its
/// pages (and, mounted with `discard`, trims them), about 55 ms for the
/// 360 MiB `.part` of a compressed download on this machine's disk. Done on
/// the engine thread as the job publishes, that delays every publication
/// by as much. Here the file
/// is renamed to `<directory>/.discard-<pid>-<n>-<random>` (the same filesystem, so
/// the rename is atomic and it leaves the job's staging directory at once)
/// and a thread unlinks it. What a crash leaves there is removed by `sweep`
/// at the next start; nothing under that name is ever anything else. The
/// name carries 64 random bits beside the pid, so daemons on several hosts
/// sharing the output directory (each may be pid 1 in its container) never
/// take the same one.
public final class Discarder: Sendable {
    public let directory: String
    private let serial = Atomic<Int>(0)
    private let pending = Mutex<Int>(0)
    private let removed: EventFD
    /// What unlinks a file on the thread (tests hold it to see the caller go on).
    private let remove: @Sendable (String) -> Void

    public init(directory: String, remove: @escaping @Sendable (String) -> Void = { _ = FileIO.unlinkIfPresent($0) }) throws(SystemError) {
        self.directory = directory
        self.remove = remove
        removed = try EventFD(nonblocking: true, for: directory)
    }

    /// Takes `path` away now and unlinks it on a thread of its own. A file
    /// that cannot be renamed (gone already, or on another filesystem) is
    /// unlinked here.
    public func discard(_ path: String) {
        let n = serial.add(1, ordering: .relaxed).newValue
        let trash = "\(directory)/.discard-\(getpid())-\(n)-" + String(UInt64.random(in: .min ... .max), radix: 16)
        guard rename(path, trash) == 0 else {
            _ = FileIO.unlinkIfPresent(path)
            return
        }
        pending.withLock { $0 += 1 }
        Thread { [self] in
            Thread.current.name = "jf-discard"
            remove(trash)
            pending.withLock { $0 -= 1 }
            removed.signal()
        }.start()
    }

    /// Blocks until every file handed to `discard` so far is unlinked, or
    /// `timeout` seconds pass. True if none is left.
    @discardableResult
    public func waitUntilIdle(timeout: Double) -> Bool {
        let deadline = SystemClock.monotonic() + timeout
        while pending.withLock({ $0 }) > 0 {
            let left = deadline - SystemClock.monotonic()
            if left <= 0 { return false }
            removed.wait(timeoutMs: Int32(min(left, 3600) * 1000) + 1)
        }
        return true
    }

    /// Unlinks what earlier runs left in `directory` (a crash before their
    /// thread got to it; another daemon's file still pending is harmless to
    /// take: its thread finds it gone). Returns how many files it removed.
    @discardableResult
    public func sweep() -> Int {
        guard let names = try? FileIO.list(directory) else { return 0 }
        return names.filter { $0.hasPrefix(".discard-") && FileIO.unlinkIfPresent(directory + "/" + $0) }.count
    }
}
