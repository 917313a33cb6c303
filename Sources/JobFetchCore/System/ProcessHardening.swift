import CLinux

/// What the daemon does to its own process before it reads a secret.
public enum ProcessHardening {
    /// No core file (RLIMIT_CORE 0) and not dumpable (no core, no ptrace or
    /// /proc/<pid>/mem for other unprivileged processes): the daemon's
    /// memory holds tokens. The unit sets `LimitCORE=0` too.
    @discardableResult
    public static func forbidCoreDumps() -> Bool { jf_forbid_core_dumps() == 0 }
}
