import Glibc

/// System calls through one door: a call a signal interrupted (`EINTR`) is
/// made again, and a failure becomes a `SystemError` naming the call and
/// what it was on, instead of a hand-written retry loop at every read and write.
public enum Syscall {
    /// `call`'s result once it is not interrupted; a negative result is thrown as `name` on `object`.
    @inline(__always)
    public static func retrying<T: BinaryInteger>(_ name: String, _ object: @autoclosure () -> String, _ call: () -> T) throws(SystemError) -> T {
        let r = uninterrupted(call)
        if r < 0 { throw SystemError(name, object()) }
        return r
    }

    /// `call`'s result once it is not interrupted, for callers that look at `errno` themselves.
    @inline(__always)
    public static func uninterrupted<T: BinaryInteger>(_ call: () -> T) -> T {
        while true {
            let r = call()
            if r >= 0 || errno != EINTR { return r }
        }
    }
}
