import Foundation
import Glibc
import Synchronization
import JobFetchCore

/// Removes files the daemon no longer needs without making the engine wait.
///
/// Unlinking a large file is not free: ext4 frees its extents and drops its
/// pages (and, mounted with `discard`, trims them), about 55 ms for the
/// 360 MiB `.part` of a compressed download on this machine's disk. Done on
/// the engine thread between naming the decompressed artifact and
/// publishing it, that delays every publication by as much. Here the file
/// is renamed to `<directory>/.discard-<pid>-<n>` (the same filesystem, so
/// the rename is atomic and it leaves the job's staging directory at once)
/// and a thread unlinks it. What a crash leaves there is removed by `sweep`
/// at the next start; nothing under that name is ever anything else.
public final class Discarder: Sendable {
    public let directory: String
    private let serial = Atomic<Int>(0)
    private let pending = Mutex<Int>(0)
    private let removed: EventFD

    public init(directory: String) throws(SystemError) {
        self.directory = directory
        removed = try EventFD(nonblocking: false, for: directory)
    }

    /// Takes `path` away now and unlinks it on a thread of its own. A file
    /// that cannot be renamed (gone already, or on another filesystem) is
    /// unlinked here.
    public func discard(_ path: String) {
        let n = serial.add(1, ordering: .relaxed).newValue
        let trash = "\(directory)/.discard-\(getpid())-\(n)"
        guard rename(path, trash) == 0 else {
            _ = FileIO.unlinkIfPresent(path)
            return
        }
        pending.withLock { $0 += 1 }
        Thread { [self] in
            Thread.current.name = "jf-discard"
            _ = FileIO.unlinkIfPresent(trash)
            pending.withLock { $0 -= 1 }
            removed.signal()
        }.start()
    }

    /// Blocks until every file handed to `discard` so far is unlinked.
    public func waitUntilIdle() {
        while pending.withLock({ $0 }) > 0 { removed.wait(timeoutMs: 1000) }
    }

    /// Unlinks what earlier runs left in `directory` (a crash before their thread got to it).
    /// Returns how many files it removed.
    @discardableResult
    public func sweep() -> Int {
        guard let names = try? FileIO.list(directory) else { return 0 }
        return names.filter { $0.hasPrefix(".discard-") && FileIO.unlinkIfPresent(directory + "/" + $0) }.count
    }
}
