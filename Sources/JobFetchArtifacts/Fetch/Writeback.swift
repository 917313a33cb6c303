import CLinux
import Glibc

/// The writeback of a byte range of a file: started, or waited for.
///
/// The wait sleeps where a kill can end it. `sync_file_range`'s own wait, like
/// fsync, is uninterruptible (state D), and a process killed while one of its
/// threads waits there does not die until that I/O completes: its sockets
/// stay open and go on filling with bytes that are lost with it, megabytes
/// on a disk slower than the download. So the writeback is started and the
/// page cache asked (`cachestat`) until nothing in the range is dirty or
/// under writeback, with a sleep between asks. A last `sync_file_range` with
/// every wait flag, which by then has nothing to wait for, reports a
/// write-back error of the range as before. Only on ext4 and XFS, whose
/// dirty and writeback marks `cachestat` reads as this expects (the caller
/// says which the file is on: `CheckpointFlush.forFile`, asked once per
/// file); elsewhere, or where `cachestat` is refused (Linux before 6.5),
/// the wait is `sync_file_range`'s own.
enum Writeback {
    /// Starts the writeback of `from..<to`, not waited for.
    static func start(_ fd: Int32, _ from: Int64, _ to: Int64) {
        _ = jf_sync_file_range(fd, from, to - from, UInt32(SYNC_FILE_RANGE_WRITE))
    }

    /// Longest sleep between two asks, in microseconds.
    static let longestPause: UInt32 = 10_000

    /// Waits until `from..<to` is on disk: 0, or the errno of the failed
    /// `sync_file_range` (ENOSYS, EINVAL or ESPIPE where it is not supported).
    /// `flush`: how the file's filesystem flushes (`.dataRange`: polled).
    static func wait(_ fd: Int32, _ from: Int64, _ to: Int64, flush: CheckpointFlush) -> Int32 {
        guard to > from else { return 0 }
        var pause: UInt32 = 200
        while flush == .dataRange {
            var cached: UInt64 = 0, dirty: UInt64 = 0, underWriteback: UInt64 = 0
            guard jf_cachestat(fd, UInt64(from), UInt64(to - from), &cached, &dirty, &underWriteback) == 0 else { break }
            if dirty == 0 && underWriteback == 0 { break }
            // Dirty pages are started, again each time: one dirtied while it
            // was written back is skipped by a start, and would wait for the flusher.
            if dirty > 0 { start(fd, from, to) }
            usleep(pause)
            pause = min(pause * 2, Self.longestPause)
        }
        let all = UInt32(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
        return jf_sync_file_range(fd, from, to - from, all) == 0 ? 0 : errno
    }
}
