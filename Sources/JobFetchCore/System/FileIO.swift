import Glibc

/// Small, exact file operations: every call checks its result and reports
/// the path, and durable writes are temp file + fsync + rename + dir fsync.
public enum FileIO {
    public static func readAll(_ path: String, limit: Int = 64 << 20) throws(SystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        return try readAll(fd: fd, path: path, limit: limit)
    }

    /// Reads what is left in `fd`; EFBIG past `limit` bytes. `path` is for messages.
    public static func readAll(fd: Int32, path: String, limit: Int = 64 << 20) throws(SystemError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try Syscall.retrying("read", path) { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw SystemError("read", path, errno: EFBIG) }
        }
        return out
    }

    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = try Syscall.retrying("write", path) { write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += n
        }
    }

    /// Writes all of `bytes` at `offset` (pwrite), for writers that share a descriptor.
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = try Syscall.retrying("write", path) { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            done += n
        }
    }

    /// Writes `bytes` to `path` durably: a temp file beside it, fsync,
    /// rename over, fsync of the directory. Readers see old or new, never half.
    /// `durable: false` leaves out both fsyncs (readers still see old or new, never half):
    /// for a file rewritten every second that nothing needs after a power cut.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, durable: Bool = true) throws(SystemError) {
        let dir = parent(path)
        let tmp = dir + "/.tmp-" + basename(path) + "-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("create", tmp) }
        var failure: SystemError?
        bytes.withUnsafeBytes { b in
            do throws(SystemError) { try writeAll(fd: fd, b, path: tmp) } catch { failure = error }
        }
        if failure == nil && durable && fsync(fd) != 0 { failure = SystemError("fsync", tmp) }
        close(fd)
        if failure == nil && rename(tmp, path) != 0 { failure = SystemError("rename", tmp) }
        if let failure {
            unlink(tmp)
            throw failure
        }
        if durable { try fsyncDirectory(dir) }
    }

    /// Appends `bytes` to `path` (created if missing) and fsyncs it: when
    /// this returns, the bytes are on disk.
    public static func appendDurably(_ path: String, _ bytes: [UInt8]) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        var failure: SystemError?
        bytes.withUnsafeBytes { b in
            do throws(SystemError) { try writeAll(fd: fd, b, path: path) } catch { failure = error }
        }
        if let failure { throw failure }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path) }
    }

    /// Removes a file; true if it was there.
    @discardableResult
    public static func unlinkIfPresent(_ path: String) -> Bool { unlink(path) == 0 }

    /// Cuts `path` to `length` bytes (creating it empty when `length` is 0 and it is missing).
    public static func truncate(_ path: String, to length: Int64) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(length)) == 0 else { throw SystemError("truncate", path) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path) }
    }

    /// The size of a regular file, or nil when there is none.
    public static func size(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(st.st_size)
    }

    public static func fsyncDirectory(_ dir: String) throws(SystemError) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", dir) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", dir) }
    }

    public static func fsyncFile(_ path: String) throws(SystemError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path) }
    }

    /// `mkdir -p`, with `mode` for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw SystemError("mkdir", path, errno: ENOTDIR) }
            return
        }
        let up = parent(path)
        if up != path && !up.isEmpty { try makeDirectories(up, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw SystemError("mkdir", path) }
    }

    /// Spool directories: owner and group may drop and remove files, others
    /// nothing, whatever the umask (the service's is 0027, which keeps the
    /// state read-only to its group). The group comes from a setgid parent
    /// (the packaged spool is setgid `jobfetchd-submit`), which the kernel
    /// passes on to new subdirectories; `mkdir` asks for no setgid bit,
    /// which systemd's `RestrictSUIDSGID=` would refuse.
    public static func makeSharedDirectories(_ path: String) throws(SystemError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw SystemError("mkdir", path, errno: ENOTDIR) }
            return
        }
        let up = parent(path)
        if up != path && !up.isEmpty { try makeSharedDirectories(up) }
        guard mkdir(path, 0o770) == 0 else {
            if errno == EEXIST { return }
            throw SystemError("mkdir", path)
        }
        // A umask took the group's bits: put them back, keeping an inherited
        // setgid bit where allowed. Under RestrictSUIDSGID= a mode with that
        // bit is refused (EPERM); the directory then keeps the spool's group
        // without the bit, which is all the daemon's own directories need.
        if stat(path, &st) == 0, st.st_mode & 0o070 != 0o070 {
            if chmod(path, (st.st_mode & S_ISGID) | 0o770) != 0 { _ = chmod(path, 0o770) }
        }
    }

    /// `rm -rf` of a directory tree this program made; never follows links.
    public static func removeTree(_ path: String) throws(SystemError) {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw SystemError("lstat", path)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in try list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw SystemError("rmdir", path) }
        } else {
            guard unlink(path) == 0 || errno == ENOENT else { throw SystemError("unlink", path) }
        }
    }

    /// The regular files under `dir`, as sorted relative paths; symlinks are
    /// not followed and top-level dotfiles (work files) are left out.
    public static func regularFiles(under dir: String) throws(SystemError) -> [String] {
        var out: [String] = []
        func walk(_ relative: String) throws(SystemError) {
            let path = relative.isEmpty ? dir : dir + "/" + relative
            for name in try list(path) {
                if relative.isEmpty && name.hasPrefix(".") { continue }
                let rel = relative.isEmpty ? name : relative + "/" + name
                var st = stat()
                guard lstat(dir + "/" + rel, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: try walk(rel)
                case S_IFREG: out.append(rel)
                default: break
                }
            }
        }
        try walk("")
        return out.sorted()
    }

    /// Bytes free for an unprivileged writer on the filesystem holding `path`.
    public static func freeSpace(_ path: String) -> Int64? {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return nil }
        return Int64(st.f_bavail) * Int64(st.f_frsize)
    }

    /// A directory's descriptor, refusing a link in its place (ELOOP) or
    /// anything but a directory (ENOTDIR).
    public static func openDirectory(_ path: String) throws(SystemError) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        return fd
    }

    /// Names in the directory open as `directory` (`path` for messages).
    public static func list(directory: Int32, path: String) throws(SystemError) -> [String] {
        let copy = dup(directory)
        guard copy >= 0 else { throw SystemError("dup", path) }
        guard let d = fdopendir(copy) else {
            let e = SystemError("opendir", path)
            close(copy)
            throw e
        }
        defer { closedir(d) }
        rewinddir(d)
        return names(d)
    }

    /// Names in a directory, without `.` and `..`.
    public static func list(_ dir: String) throws(SystemError) -> [String] {
        guard let d = opendir(dir) else { throw SystemError("opendir", dir) }
        defer { closedir(d) }
        return names(d)
    }

    private static func names(_ d: OpaquePointer) -> [String] {
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// By bytes, as the kernel splits paths: a `/` followed by a combining
    /// mark is another Character to Swift, but still a separator.
    public static func parent(_ path: String) -> String {
        let b = path.utf8
        guard let slash = b.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        if slash == b.startIndex { return "/" }
        return String(decoding: b[..<slash], as: UTF8.self)
    }

    public static func basename(_ path: String) -> String {
        let b = path.utf8
        guard let slash = b.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return String(decoding: b[b.index(after: slash)...], as: UTF8.self)
    }
}
