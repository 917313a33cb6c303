import ArgumentParser
import Glibc
import JobFetchCore
import JobFetchStore

struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until a job is finished (on inotify, never by polling).",
        discussion: """
            Exit status: 0 succeeded (prints the job's directory), 3 failed, 4 cancelled \
            (both print the reason), 5 timed out, 6 not registered. A job still in the \
            spool counts as registered: `add` then `wait` works before the daemon runs.
            """)

    @OptionGroup var job: JobArguments

    @Option(help: "Give up after this long (e.g. 90s, 10m, 2h); default: wait as long as it takes.")
    var timeout: String?

    func validate() throws {
        if let timeout, Units.duration(timeout) == nil {
            throw ValidationError("--timeout \"\(timeout)\" is not a duration (like 90s, 10m, 2h)")
        }
    }

    /// Where the job stands, as far as waiting for it goes.
    enum Standing: Equatable {
        case finished(JobState, reason: String?, removed: Bool)
        /// Registered and not finished; `publishing`: its directory is being renamed into place.
        case waiting(publishing: Bool)
        case notRegistered
    }

    func run() throws {
        let config = try job.options.load()
        let key = try job.key()
        let kind = key.kind
        try job.options.checkKind(kind, in: config)
        let deadline = timeout.flatMap(Units.duration).map { SystemClock.monotonic() + $0 }
        let d = config.daemon
        let kindOutput = d.outputDir + "/" + kind
        // Once the job is publishing, the state directory is watched too (it
        // changes at every commit, so not before): the store says the job is
        // finished a moment after its directory is renamed into place.
        var watchState = false
        while true {
            // The watches are set before the job is looked at, so nothing that
            // happens after the look goes unseen.
            let ino: Inotify
            do { ino = try Inotify() } catch { throw ValidationError("cannot watch for the job: \(error)") }
            // The job's directory is renamed into <output>/<kind> when it is published;
            // before the daemon first ran, the nearest directory that exists is watched.
            let watched = [kindOutput, d.outputDir, FileIO.parent(d.outputDir)].first(where: FileIO.isDirectory)
            if let w = watched { _ = try? ino.watch(w, mask: UInt32(IN_MOVED_TO | IN_CREATE)) }
            // The spool files that hold it (a registration, a retry) are taken.
            for request in [SpoolRequest.register, .retry] {
                let dir = request.directory(spool: d.spoolDir, kind: kind)
                _ = try? ino.watch(FileIO.isDirectory(dir) ? dir : d.spoolDir, mask: UInt32(IN_DELETE | IN_MOVED_FROM | IN_CREATE))
            }
            if watchState {
                // Commits write the WAL; reading the store (as this program does) does not.
                _ = try? ino.watch(d.databasePath + "-wal", mask: UInt32(IN_MODIFY))
                _ = try? ino.watch(d.stateDir, mask: UInt32(IN_CREATE | IN_MOVED_TO))
            }
            let standing = try look(key, config: config)
            switch standing {
            case .finished(let state, let reason, let removed):
                if removed {
                    let note = Array("its results were removed by keep_results\n".utf8)
                    _ = note.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
                }
                return try finish(state, reason: reason, directory: kindOutput + "/" + key.id.rawValue)
            case .notRegistered:
                print("no job \(key) is registered, and none is waiting in the spool")
                throw ExitCode(6)
            case .waiting(let publishing):
                // Looked at again with the watch in place: a commit between the look and the watch is not missed.
                if publishing && !watchState { watchState = true; continue }
            }
            // Publishing lasts a moment: the store is looked at again within a
            // second even if no commit is seen (a guard, not the way it waits).
            var left = standing == .waiting(publishing: true) ? 1.0 : 3600.0
            if let deadline {
                let remaining = deadline - SystemClock.monotonic()
                left = min(left, remaining)
                if remaining <= 0 {
                    print("timed out waiting for \(key)")
                    throw ExitCode(5)
                }
            }
            var p = pollfd(fd: ino.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(min(left, 3600) * 1000) + 1)
        }
    }

    func look(_ key: JobKey, config: Config) throws -> Standing {
        // The spool first: the daemon records a job before it removes its spool
        // file, so a job that left the spool between the two looks is in the store.
        let pending = inSpool(key, .register, spool: config.daemon.spoolDir)
        // A retry asked for and not yet carried out: the job will run again.
        let retrying = inSpool(key, .retry, spool: config.daemon.spoolDir)
        if let store = try job.options.openStore(config) {
            let record: JobRecord?
            do { record = try store.job(key) } catch { throw ValidationError("cannot read the state database: \(error)") }
            if let r = record {
                if r.state.isTerminal && !(retrying && r.state != .succeeded) {
                    return .finished(r.state, reason: r.reason, removed: r.resultsRemovedAt.map { $0 >= (r.finishedAt ?? 0) } ?? false)
                }
                return .waiting(publishing: r.state == .publishing)
            }
        }
        return pending ? .waiting(publishing: false) : .notRegistered
    }

    /// A spool file of the kind names the job (the daemon has not taken it
    /// yet). Opened as the daemon opens them: never through a link, never
    /// blocking on a FIFO, only a regular file read.
    func inSpool(_ key: JobKey, _ request: SpoolRequest, spool: String) -> Bool {
        let dir = request.directory(spool: spool, kind: key.kind)
        guard let names = try? FileIO.list(dir) else { return false }
        for name in names where !name.hasPrefix(".") {
            let fd = open(dir + "/" + name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG,
                  let bytes = try? FileIO.readAll(fd: fd, path: dir + "/" + name, limit: SpoolFile.maxSize) else { continue }
            if SpoolFile.parse(name: name, bytes: bytes).ids.contains(key.id) { return true }
        }
        return false
    }

    func finish(_ state: JobState, reason: String?, directory: String) throws {
        switch state {
        case .succeeded:
            print(directory)
        case .failed:
            print(ServerText.escaped("failed: \(reason ?? "no reason recorded")"))
            throw ExitCode(3)
        default:
            print(ServerText.escaped("cancelled" + (reason.map { ": \($0)" } ?? "")))
            throw ExitCode(4)
        }
    }
}
