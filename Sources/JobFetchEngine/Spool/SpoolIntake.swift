import Glibc
import Logging
import JobFetchCore
import JobFetchStore

/// Takes job registrations from `<spool>/<kind>/`: each file is read once
/// it is closed after writing (or renamed in), its IDs are committed to the
/// store in one transaction, and only then is the file removed. A file with
/// a bad line goes to `<spool>/.rejected/` with a `.reason` beside it; its
/// good lines are still registered. Cancel and retry requests arrive the
/// same way in `.cancel/<kind>/` and `.retry/<kind>/` and go to `apply`.
public final class SpoolIntake {
    let spoolDir: String
    let store: any JobStoring
    let logger: Logger
    let clock: any JobClock
    let inotify: Inotify
    private var watches: [Int32: (request: SpoolRequest, kind: String)] = [:]
    /// Each watched directory's descriptor, by path: entries are listed,
    /// opened, removed and moved relative to it, never through the path
    /// again, so a member of the submit group who renames a directory and
    /// puts a link in its place redirects nothing.
    private var directories: [String: Int32] = [:]
    private var rejectedFD: Int32 = -1
    /// Files seen at a scan that were modified moments ago: a writer may
    /// still hold them open; they are looked at again when they settle.
    private var unsettled: [String: (request: SpoolRequest, kind: String)] = [:]
    /// Carries out a cancel or retry request; returns why it could not be, or nil.
    public var apply: ((SpoolRequest, JobKey) -> String?)?
    public private(set) var recheckAt: Double?
    /// How soon a file whose registration failed is read again.
    static let retryTime = 2.0
    static let settleTime = 2.0
    /// How many bad lines a `.reason` file (and the log) lists.
    static let maxProblemsShown = 20

    public var rejectedDir: String { spoolDir + "/.rejected" }

    public init(spoolDir: String, store: any JobStoring, inotify: Inotify, logger: Logger, clock: any JobClock = SystemClock.shared) {
        self.clock = clock
        self.spoolDir = spoolDir
        self.store = store
        self.inotify = inotify
        self.logger = logger
    }

    /// Watches a directory for each kind (creating it) and stops watching
    /// kinds that are gone from the config.
    /// A kind's directory that is not a plain directory (a link put there by
    /// a member of the submit group) is refused with an error, and the
    /// daemon goes on without it.
    public func watch(kinds: [String]) throws(SystemError) {
        try FileIO.makeSharedDirectories(spoolDir)
        try FileIO.makeSharedDirectories(rejectedDir)
        if rejectedFD < 0 { rejectedFD = try FileIO.openDirectory(rejectedDir) }
        for (wd, w) in watches where !kinds.contains(w.kind) {
            inotify.unwatch(wd)
            watches[wd] = nil
            let dir = w.request.directory(spool: spoolDir, kind: w.kind)
            if let fd = directories.removeValue(forKey: dir) { close(fd) }
        }
        for request in SpoolRequest.allCases {
            for kind in kinds where !watches.values.contains(where: { $0 == (request, kind) }) {
                let dir = request.directory(spool: spoolDir, kind: kind)
                do throws(SystemError) {
                    try FileIO.makeSharedDirectories(dir)
                    let fd = try FileIO.openDirectory(dir)
                    let wd: Int32
                    do { wd = try inotify.watch(dir, mask: UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_Q_OVERFLOW | IN_DONT_FOLLOW | IN_ONLYDIR)) } catch {
                        close(fd)
                        throw error
                    }
                    watches[wd] = (request, kind)
                    directories[dir] = fd
                } catch {
                    logger.error("spool directory \(dir) is refused (\(error)); \(request.rawValue) requests of kind \(kind) are not taken until it is a plain directory")
                }
            }
        }
    }

    /// Reads every file already waiting (those that arrived while the daemon was down).
    /// Registrations first, so a cancel dropped right after an add finds its job.
    public func scanAll(now: Double) {
        for request in SpoolRequest.allCases {
            for kind in Set(watches.values.filter { $0.request == request }.map(\.kind)).sorted() {
                scan(request, kind: kind, now: now)
            }
        }
    }

    func scan(_ request: SpoolRequest, kind: String, now: Double) {
        let dir = request.directory(spool: spoolDir, kind: kind)
        guard let dirFD = directories[dir] else { return }
        let names: [String]
        do { names = try FileIO.list(directory: dirFD, path: dir) } catch {
            logger.error("cannot list the spool directory: \(error)")
            return
        }
        for name in names where !name.hasPrefix(".") {
            var st = stat()
            if fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG,
               now - (Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9) < Self.settleTime {
                unsettled[dir + "/" + name] = (request, kind)
                recheckAt = min(recheckAt ?? .infinity, now + Self.settleTime)
                continue
            }
            take(request, kind: kind, name: name)
        }
    }

    /// Looks again at files that were still settling.
    public func recheck(now: Double) {
        guard let at = recheckAt, at <= now else { return }
        recheckAt = nil
        let pending = unsettled
        unsettled = [:]
        for request in SpoolRequest.allCases {
            for kind in Set(pending.values.filter { $0.request == request }.map(\.kind)).sorted() { scan(request, kind: kind, now: now) }
        }
    }

    /// Handles inotify events; returns true if the queue overflowed (then everything was rescanned).
    public func handle(_ events: [Inotify.Event], now: Double) {
        var overflow = false
        for e in events {
            if e.mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true; continue }
            guard let w = watches[e.watch], !e.name.isEmpty, !e.name.hasPrefix(".") else { continue }
            unsettled[w.request.directory(spool: spoolDir, kind: w.kind) + "/" + e.name] = nil
            take(w.request, kind: w.kind, name: e.name)
        }
        if overflow {
            logger.warning("inotify queue overflowed; rescanning the spool")
            scanAll(now: now)
        }
    }

    /// Registers one spool file's jobs (or applies its requests), then removes or rejects it.
    func take(_ request: SpoolRequest, kind: String, name: String) {
        let dir = request.directory(spool: spoolDir, kind: kind)
        let path = dir + "/" + name
        guard let dirFD = directories[dir] else { return }
        // Whoever may write the spool may also swap what a name points at:
        // the entry is opened once, relative to the directory's descriptor,
        // without following a link and without blocking (a FIFO), and
        // everything after is asked of that descriptor.
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let e = errno
            switch e {
            case ENOENT: return  // already taken
            case ELOOP: reject(request, kind: kind, name: name, reason: "a symbolic link (a spool entry must be a plain file; links are never followed)")
            case ENXIO, EACCES, EPERM: reject(request, kind: kind, name: name, reason: "not a readable plain file (\(SystemError("open", path, errno: e)))")
            default: logger.error("cannot open spool file \(path): \(SystemError("open", path, errno: e))")
            }
            return
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            reject(request, kind: kind, name: name, reason: "not a regular file (a spool entry must be a plain file)")
            return
        }
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(fd: fd, path: path, limit: SpoolFile.maxSize) } catch {
            if error.errno == EFBIG {
                reject(request, kind: kind, name: name, reason: "larger than \(SpoolFile.maxSize >> 20) MiB; a spool file is a list of job IDs")
            } else {
                logger.error("cannot read spool file \(path): \(error)")
            }
            return
        }
        var contents = SpoolFile.parse(name: name, bytes: bytes)
        if Self.waits(request, kind: kind, settling: unsettled.values) {
            unsettled[path] = (request, kind)
            recheckAt = min(recheckAt ?? .infinity, clock.now() + Self.settleTime)
            return
        }
        if request != .register {
            for id in contents.ids {
                if let problem = apply?(request, JobKey(kind: kind, id: id)) {
                    contents.problems.append(SpoolFile.LineProblem(line: 0, message: "\(request.rawValue) \(kind)/\(id): \(problem)"))
                }
            }
        } else if !contents.ids.isEmpty {
            do {
                let added = try store.register(contents.ids.map { JobKey(kind: kind, id: $0) }, now: clock.now())
                for key in added { logger.info("registered", metadata: Logger.job(key)) }
                let known = contents.ids.count - added.count
                if known > 0 { logger.debug("\(known) job(s) in spool file \(kind)/\(name) were already registered") }
            } catch {
                // The file stays: nothing is lost, it is tried again shortly (a store that did not answer, a deadlock).
                logger.error("cannot register the jobs of spool file \(kind)/\(name); it stays in the spool and is tried again in \(Int(Self.retryTime))s: \(error)")
                unsettled[path] = (request, kind)
                recheckAt = min(recheckAt ?? .infinity, clock.now() + Self.retryTime)
                return
            }
        }
        if contents.problems.isEmpty {
            if unlinkat(dirFD, name, 0) != 0 && errno != ENOENT { logger.error("cannot remove spool file \(path): \(SystemError("unlink", path))") }
        } else {
            // Each problem quotes at most a short, escaped prefix of its line
            // (JobID.quoted); a file of many bad lines lists only the first few.
            let why = ServerText.firstOf(contents.problems.map(\.description), max: Self.maxProblemsShown) { "… and \($0) more bad line(s)" }
                .joined(separator: "\n")
            let done = request == .register ? "(\(contents.ids.count) valid ID(s) in the file were registered)" : "(the other requests in the file were carried out)"
            reject(request, kind: kind, name: name, reason: why + "\n" + done)
        }
    }

    /// A cancel or retry waits while registrations of its kind are still
    /// settling: it may be about one of them, so it is looked at after them
    /// (a cancel dropped right after an add must find its job).
    public static func waits(_ request: SpoolRequest, kind: String, settling: some Sequence<(request: SpoolRequest, kind: String)>) -> Bool {
        request != .register && settling.contains { $0 == (.register, kind) }
    }

    /// Where a rejected file goes: `.rejected/<kind>.<name>` for registrations,
    /// `.rejected/<cancel|retry>.<kind>.<name>` for requests.
    public func rejectedPath(_ request: SpoolRequest, kind: String, name: String) -> String {
        request == .register ? "\(rejectedDir)/\(kind).\(name)" : "\(rejectedDir)/\(request.rawValue).\(kind).\(name)"
    }

    func reject(_ request: SpoolRequest, kind: String, name: String, reason: String) {
        let source = request.directory(spool: spoolDir, kind: kind) + "/" + name
        var target = rejectedPath(request, kind: kind, name: name)
        var n = 1
        while FileIO.exists(target) || FileIO.exists(target + ".reason") { n += 1; target = "\(rejectedDir)/\(kind).\(name).\(n)" }
        do {
            guard let dirFD = directories[FileIO.parent(source)] else { throw SystemError("rename", source, errno: ENOENT) }
            try FileIO.writeAtomically(target + ".reason", Array("spool file \(FileIO.basename(FileIO.parent(source)))/\(JobID.quoted(name)):\n\(reason)\n".utf8))
            guard renameat(dirFD, name, rejectedFD, FileIO.basename(target)) == 0 else { throw SystemError("rename", source) }
            try FileIO.fsyncDirectory(rejectedDir)
            logger.warning("spool file \(kind)/\(name) rejected to \(target): \(reason)")
        } catch {
            logger.error("cannot move bad spool file \(source) to \(rejectedDir): \(error)")
        }
    }
}
