import Foundation
import Glibc
import Synchronization
import JobFetchCore

/// Hashes a file on its own thread while another thread is still writing
/// it (the decompressor's output), so the digest is ready when the file is.
public final class FollowingHasher: Sendable {
    public var path: String { follower.path }
    private let follower: FileFollower<Result<String, SystemError>>
    private let position = Atomic<Int64>(0)

    /// Bytes of the file hashed so far.
    public var hashed: Int64 { position.load(ordering: .relaxed) }

    /// `job` (`kind/id`): a crash on the worker thread is held against it (`CrashGuard`).
    public init(path: String, job: String? = nil) throws(SystemError) {
        follower = try FileFollower(path: path, blockingDone: true)
        follower.start(name: "jf-sha256", job: job) { [self] in self.hash() }
    }

    public func advance(to size: Int64) { follower.advance(to: size) }

    public func cancel() { follower.cancel() }

    /// The file is complete at `size`: waits for the digest (on the caller's thread).
    public func finish(size: Int64) -> Result<String, SystemError> {
        follower.end(at: size)
        return follower.waitForOutcome() ?? .failure(SystemError("sha256", path, errno: ECANCELED))
    }

    private func hash() -> Result<String, SystemError> {
        let sha: SHA256Stream
        do { sha = try SHA256Stream() } catch { return .failure(error) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        var pos: Int64 = 0
        while !follower.isCancelled {
            let isEnded = follower.isEnded
            let avail = follower.size
            if pos < avail {
                if fd < 0 {
                    fd = open(path, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { return .failure(SystemError("open", path)) }
                }
                let n = Syscall.uninterrupted { pread(fd, buffer.baseAddress, Int(min(Int64(buffer.count), avail - pos)), off_t(pos)) }
                if n < 0 { return .failure(SystemError("read", path)) }
                if n == 0 { return .failure(SystemError("read", path, errno: EIO)) }
                sha.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                pos += Int64(n)
                position.store(pos, ordering: .relaxed)
                continue
            }
            if isEnded { return .success(sha.finish()) }
            follower.waitForMore()
        }
        return .failure(SystemError("sha256", path, errno: ECANCELED))
    }
}
