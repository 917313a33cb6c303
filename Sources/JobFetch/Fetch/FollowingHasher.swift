import Foundation
import Glibc
import Synchronization

/// Hashes a file on its own thread while another thread is still writing
/// it (the decompressor's output), so the digest is ready when the file is.
public final class FollowingHasher: Sendable {
    public let path: String
    private let available = Atomic<Int64>(0)
    private let ended = Atomic<Bool>(false)
    private let cancelled = Atomic<Bool>(false)
    private let wakeUp: EventFD
    private let done: EventFD
    private let result = Mutex<Result<String, SystemError>?>(nil)

    /// `job` (`kind/id`): a crash on the worker thread is held against it (`CrashGuard`).
    public init(path: String, job: String? = nil) throws(SystemError) {
        self.path = path
        wakeUp = try EventFD(nonblocking: true, for: path)
        done = try EventFD(nonblocking: false, for: path)
        // Named from inside: a name set before start() is not applied on Linux.
        Thread { [self, job] in
            Thread.current.name = "jf-sha256"
            CrashGuard.attributeThread(to: job)
            self.run()
        }.start()
    }

    public func advance(to size: Int64) {
        available.store(size, ordering: .sequentiallyConsistent)
        wake()
    }

    public func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    /// The file is complete at `size`: waits for the digest (on the caller's thread).
    public func finish(size: Int64) -> Result<String, SystemError> {
        available.store(size, ordering: .sequentiallyConsistent)
        ended.store(true, ordering: .sequentiallyConsistent)
        wake()
        done.wait(timeoutMs: -1)
        return result.withLock { $0 } ?? .failure(SystemError("sha256", path, errno: ECANCELED))
    }

    private func wake() { wakeUp.signal() }

    private func run() {
        let r = hash()
        result.withLock { $0 = r }
        done.signal()
    }

    private func hash() -> Result<String, SystemError> {
        let sha: SHA256Stream
        do { sha = try SHA256Stream() } catch { return .failure(error) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        var pos: Int64 = 0
        while !cancelled.load(ordering: .sequentiallyConsistent) {
            let isEnded = ended.load(ordering: .sequentiallyConsistent)
            let avail = available.load(ordering: .sequentiallyConsistent)
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
                continue
            }
            if isEnded { return .success(sha.finish()) }
            wakeUp.wait(timeoutMs: 1000)
        }
        return .failure(SystemError("sha256", path, errno: ECANCELED))
    }
}
