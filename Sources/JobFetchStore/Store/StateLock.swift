import Glibc
import JobFetchCore

/// `<state_dir>/jobfetchd.lock`, held with `flock` for the daemon's life:
/// a second daemon on the same state refuses to start, and `jobfetchctl`
/// can tell whether a daemon is there to carry out its requests.
public final class StateLock {
    let fd: Int32

    public static func path(stateDir: String) -> String { stateDir + "/jobfetchd.lock" }

    /// Takes the lock (the daemon); throws when another process holds it.
    public init(stateDir: String) throws(JobFetchError) {
        let path = Self.path(stateDir: stateDir)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw JobFetchError(SystemError("open", path).description) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let why = errno
            close(fd)
            if why == EWOULDBLOCK {
                throw JobFetchError("another jobfetchd is running with state_dir \(stateDir) (it holds \(path))")
            }
            throw JobFetchError(SystemError("flock", path, errno: why).description)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// True when a daemon holds the lock for `stateDir` now.
    public static func isHeld(stateDir: String) -> Bool {
        let fd = open(path(stateDir: stateDir), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 { return false }
        return errno == EWOULDBLOCK
    }
}
