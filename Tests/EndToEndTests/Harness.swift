import CLinux
import Foundation
import Glibc
import JobFetchArtifacts
import JobFetchCore
import Synchronization

/// A child process started with posix_spawn: stdout to a pipe read line by
/// line with a deadline (to wait on the fake API's events), stderr to a file.
final class Child {
    let pid: pid_t
    private let stdoutFD: Int32
    private var buffer: [UInt8] = []
    private(set) var lines: [String] = []
    private var reaped = false

    /// `blocked`: signals the child starts with blocked (one sent before it
    /// has set anything up then stays pending instead of acting at once).
    init(_ argv: [String], environment: [String: String] = [:], stderrPath: String, blocked: [Int32] = []) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SystemError("pipe", argv[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        // Nothing else of the test process: a child orphaned by a crashed test holds no lock or pipe of the runner.
        jf_spawn_closefrom(&actions, 3)
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "JOURNAL_STREAM")
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (k, v) in environment { env[k] = v }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        // The child starts with no signal blocked and default handlers: the test
        // runner's worker threads block signals, and a spawned process inherits that.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var mask = sigset_t()
        sigemptyset(&mask)
        for sig in blocked { sigaddset(&mask, sig) }
        posix_spawnattr_setsigmask(&attr, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var p: pid_t = 0
        let rc = posix_spawn(&p, argv[0], &actions, &attr, cArgs, cEnv)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw SystemError("posix_spawn", argv[0], errno: rc) }
        pid = p
        stdoutFD = fds[0]
    }

    deinit {
        if !reaped { kill(pid, SIGKILL); _ = waitExit() }
        close(stdoutFD)
    }

    /// Reads stdout until a line satisfies `match` or `timeout` passes.
    func waitForLine(timeout: Double = 30, _ match: (String) -> Bool) -> String? {
        if let hit = lines.first(where: match) { return hit }
        let deadline = SystemClock.monotonic() + timeout
        repeat {
            let left = max(0, deadline - SystemClock.monotonic())
            let before = lines.count
            guard readSome(timeout: left) else { return lines.dropFirst(before).first(where: match) }
            if let hit = lines.dropFirst(before).first(where: match) { return hit }
        } while SystemClock.monotonic() < deadline
        return nil
    }

    /// Every line the child has written so far (what is in the pipe now included).
    var allLines: [String] {
        while readSome(timeout: 0) {}
        return lines
    }

    /// Reads what is there (waiting up to `timeout`) and splits it into
    /// `lines`; false when nothing came or the pipe is closed.
    private func readSome(timeout: Double) -> Bool {
        var p = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(stdoutFD, &chunk, chunk.count)
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        while let nl = buffer.firstIndex(of: 0x0A) {
            lines.append(String(decoding: buffer[..<nl], as: UTF8.self))
            buffer.removeSubrange(...nl)
        }
        return true
    }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits up to `timeout` for the process to end (its pidfd becomes
    /// readable); its exit status as `waitExit` gives it, or nil if it still runs.
    func waitExit(timeout: Double) -> Int32? {
        let fd = jf_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = SystemClock.monotonic() + timeout
        while true {
            let left = deadline - SystemClock.monotonic()
            if left <= 0 { return nil }
            let n = poll(&p, 1, Int32(left * 1000) + 1)
            if n > 0 { return waitExit() }
            if n < 0 && errno != EINTR { return nil }
        }
    }

    /// Waits up to `timeout` for the process to stop (SIGSTOP, as a debug
    /// build's `JOBFETCH_FAULT_STOP` does): true once it is stopped; false if
    /// it ended instead or did neither in time (then it is killed).
    func waitStopped(timeout: Double) -> Bool {
        let pid = self.pid
        let outcome = Mutex<Int32?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR {}
            outcome.withLock { $0 = status }
            done.signal()
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kill(pid, SIGKILL)
            done.wait()
        }
        let status = outcome.withLock { $0 } ?? 0
        let stopped = status & 0xFF == 0x7F
        if !stopped { reaped = true }
        return stopped
    }

    /// Waits for the process to end; returns its exit status (128+signal if killed).
    @discardableResult
    func waitExit() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        if status & 0x7F == 0 { return (status >> 8) & 0xFF }
        return 128 + (status & 0x7F)
    }
}

/// One isolated installation: temp dirs, the fake API on a free port, a config.
final class Installation {
    let root: String
    let apiKey = "key-\(UInt32.random(in: 0...UInt32.max))"
    let api: Child
    let port: Int
    /// The second origin: the fake object store serving presigned URLs.
    let filesPort: Int
    var daemon: Child?

    static let binDir: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The test binary lives in .build/<triple>/debug/<package>PackageTests.xctest.
        while !FileManager.default.isExecutableFile(atPath: dir.path + "/jobfetchd") && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.path
    }()
    static let fakeAPI = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/FakeAPI/fake_api.py"

    var configPath: String { root + "/daemon.conf" }
    var spool: String { root + "/spool" }
    var output: String { root + "/output" }
    var dataDir: String { root + "/data" }

    /// `sections` are more config sections; `{API}` in them becomes the fake
    /// API's base URL and `{KEYFILE}` the file holding its key.
    init(extraKindLines: String = "", sections: String = "", daemonLines: String = "") throws {
        var template = Array((NSTemporaryDirectory() + "/jobfetch-e2e-XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw SystemError("mkdtemp", "") }
        root = String(cString: p)
        try FileIO.makeDirectories(root + "/data")
        try FileIO.writeAtomically(root + "/api-key", Array((apiKey + "\n").utf8))
        api = try Child(["/usr/bin/env", "python3", Self.fakeAPI, "--api-key", apiKey, "--data-dir", root + "/data"], stderrPath: root + "/fake-api.err")
        guard let files = api.waitForLine(timeout: 30, { $0.hasPrefix("FILES-PORT ") }), let filesPort = Int(files.dropFirst(11)),
              let line = api.waitForLine(timeout: 30, { $0.hasPrefix("PORT ") }), let port = Int(line.dropFirst(5)) else {
            throw JobFetchError("the fake API did not start; see \(root)/fake-api.err")
        }
        self.port = port
        self.filesPort = filesPort
        let more = sections.replacingOccurrences(of: "{API}", with: "http://127.0.0.1:\(port)")
            .replacingOccurrences(of: "{KEYFILE}", with: root + "/api-key")
        let conf = """
            [daemon]
            spool_dir = \(root)/spool
            state_dir = \(root)/state
            output_dir = \(root)/output
            log_level = debug\(daemonLines.isEmpty ? "" : "\n" + daemonLines.replacingOccurrences(of: "{ROOT}", with: root))

            [kind dataset]
            preset = dataset
            status_url = http://127.0.0.1:\(port)/v0/datasets/{id}
            header = x-api-key: ${file:\(root)/api-key}
            poll_interval = 200ms
            max_poll_interval = 1s
            timeout = 2m
            \(extraKindLines)

            \(more)
            """
        try FileIO.writeAtomically(configPath, Array(conf.utf8))
    }

    deinit {
        daemon?.signal(SIGKILL)
        api.signal(SIGKILL)
        if ProcessInfo.processInfo.environment["KEEP_E2E"] == nil { try? FileIO.removeTree(root) }
    }

    /// Starts jobfetchd and waits until it has set up its directories
    /// (from then on a spool file is either scanned at start or seen by inotify).
    func startDaemon(environment: [String: String] = [:], beforeReady: ((Child) -> Void)? = nil, blocked: [Int32] = []) throws {
        try FileIO.makeDirectories(output)
        let d = try Child([Self.binDir + "/jobfetchd", "--config", configPath], environment: environment,
                          stderrPath: root + "/daemon.log", blocked: blocked)
        daemon = d
        beforeReady?(d)
        guard try Inotify.wait(for: "dataset", in: output, timeout: 30) else {
            throw JobFetchError("jobfetchd did not start; log:\n\(daemonLog)")
        }
    }

    struct RunningCtl {
        let process: Process
        let out: Pipe
        let err: Pipe

        func finish() -> (status: Int32, out: String, err: String) {
            let o = out.fileHandleForReading.readDataToEndOfFile()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
    }

    var daemonLog: String { (try? String(contentsOfFile: root + "/daemon.log", encoding: .utf8)) ?? "" }

    /// jobfetchctl, started (with `input` on its standard input, else none); `finish` it for its results.
    func startCtl(_ args: [String], input: [UInt8]? = nil) throws -> RunningCtl {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binDir + "/jobfetchctl")
        p.arguments = ["--config", configPath] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try p.run()
        if let input {
            // Written from another thread: the child may fill its output pipes before it reads all of it.
            let writer = inPipe.fileHandleForWriting
            Thread.detachNewThread {
                writer.write(Data(input))
                try? writer.close()
            }
        }
        return RunningCtl(process: p, out: out, err: err)
    }

    /// Runs jobfetchctl; returns exit status, stdout and stderr.
    func ctl(_ args: [String], input: [UInt8]? = nil) throws -> (status: Int32, out: String, err: String) {
        try startCtl(args, input: input).finish()
    }

    /// Waits (inotify, not sleep) for a job's output directory to be published.
    func waitForResult(_ id: String, kind: String = "dataset", timeout: Double = 60) throws -> Bool {
        try Inotify.wait(for: id, in: output + "/" + kind, timeout: timeout)
    }

    func jobJSON(_ id: String, kind: String = "dataset") throws -> JSONValue {
        try JSONParser.parse(try FileIO.readAll("\(output)/\(kind)/\(id)/job.json"))
    }

    /// Waits, on renames in `<output>/<kind>/` (a result replaced by a retry), until `condition` holds.
    func waitUntil(kind: String = "dataset", timeout: Double = 60, _ condition: () -> Bool) throws -> Bool {
        try Inotify.wait(until: condition, in: output + "/" + kind, mask: UInt32(IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE), timeout: timeout)
    }

    /// Waits until the job's `.part` sidecar records flushed bytes; returns it.
    func waitForPart(_ id: String, kind: String = "dataset", timeout: Double = 30) throws -> PartSidecar? {
        let incoming = output + "/.incoming"
        guard try Inotify.wait(for: kind, in: incoming, timeout: timeout),
              try Inotify.wait(for: id, in: incoming + "/" + kind, timeout: timeout) else { return nil }
        let staging = incoming + "/" + kind + "/" + id
        var found: PartSidecar?
        _ = try Inotify.wait(until: {
            found = PartSidecar.load(part: staging + "/.artifact.part").flatMap { $0.synced > 0 ? $0 : nil }
            return found != nil
        }, in: staging, mask: UInt32(IN_MOVED_TO), timeout: timeout)
        return found
    }

    func killDaemon() {
        daemon?.signal(SIGKILL)
        daemon?.waitExit()
        daemon = nil
    }

    func file(_ kind: String, _ id: String, _ name: String) -> String {
        (try? String(decoding: FileIO.readAll("\(output)/\(kind)/\(id)/\(name)"), as: UTF8.self)) ?? ""
    }
}

func sha256sum(_ path: String) -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [path]
    let out = Pipe()
    p.standardOutput = out
    try? p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
