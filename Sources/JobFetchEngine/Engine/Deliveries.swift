import CLinux
import Glibc
import HeapModule
import Logging
import JobFetchArtifacts
import JobFetchCore
import JobFetchStore
import JobFetchTransfer

/// What runs after publication, at least once per outcome: the kind's
/// `on_complete` program and its `notify_url` webhook. Both live in the
/// engine's loop: a hook's pidfd and output pipe, and a webhook's request,
/// are in the same poll as the downloads, so a slow hook or receiver never
/// holds anything else up. At most `max_hooks` hooks run at once, and at
/// most `max_hooks` webhook requests are in flight.
///
/// The store carries each one's state: `pending` from the transaction that
/// recorded the outcome (the machine sets it), `running` committed before
/// the program or the request starts, then `succeeded`, `pending` again
/// (a retry, after the kind's backoff) or `failed` after `hook_retries`
/// retries. A daemon that stops while one runs finds it `running` at start
/// and runs it again.
final class Deliveries {
    enum What: String, CaseIterable {
        case hook = "on_complete"
        case notify = "notify_url"

        var field: WritableKeyPath<JobRecord, Delivery?> {
            switch self {
            case .hook: \.hook
            case .notify: \.notify
            }
        }
        /// As the history and the log name it.
        var name: String { self == .hook ? "on_complete" : "webhook" }
    }

    struct Due: Comparable {
        var at: Double
        var key: JobKey
        static func < (a: Due, b: Due) -> Bool { (a.at, a.key) < (b.at, b.key) }
    }

    /// A hook's process: its pidfd (readable once it exits), its output
    /// pipe, and what is left of its last line.
    struct Running {
        let key: JobKey
        let pid: Int32
        let pidfd: Int32
        var output: Int32
        /// Which run of which outcome it is.
        let run: Run
        let startedAt: Double
        let deadline: Double
        var killed = false
        var partial: [UInt8] = []
        var lines = 0
    }

    var config: Config
    let store: any JobStoring
    let http: CurlMulti
    let secrets: SecretFileCache
    /// Where a job's directory is published.
    let publisher: Publisher
    let logger: Logger
    let driver: JobDriver
    private var queues: [What: Heap<Due>] = [.hook: Heap(), .notify: Heap()]
    private var hooks: [JobKey: Running] = [:]
    /// Webhook requests in flight, by tag: the job and which run.
    private var webhooks: [Int: (key: JobKey, run: Run, origin: String)] = [:]
    /// What is in the queues, so that a reload does not queue it twice.
    private var queued: [What: Set<JobKey>] = [.hook: [], .notify: []]
    /// Ends that could not be recorded (the store failed): tried again each turn.
    private var unrecorded: [(what: What, key: JobKey, run: Run, ok: Bool, detail: String, at: Double)] = []

    /// Which run: of which outcome (the job's retries) and which attempt at it.
    struct Run: Equatable {
        var retries: Int
        var attempt: Int
        init(retries: Int, attempt: Int) { self.retries = retries; self.attempt = attempt }
        init(_ r: JobRecord, _ d: Delivery) { self.init(retries: r.retries, attempt: d.attempts) }
    }

    /// A hook's output lines logged per run at most (the rest is read and dropped).
    static let maxLines = 1000
    /// Output read from one hook per turn at most: a hook that writes without
    /// pause cannot keep the loop from everything else.
    static let maxReadPerTurn = 64 * 1024
    static let webhookTimeout = 30.0
    /// How long a shutdown waits for hooks to end after SIGTERM.
    static let stopGrace = 2.0
    /// The most of `job.json` a webhook sends (ours is far smaller).
    static let maxBody = 16 << 20

    init(config: Config, store: any JobStoring, http: CurlMulti, secrets: SecretFileCache, publisher: Publisher, driver: JobDriver, logger: Logger) {
        self.config = config
        self.store = store
        self.http = http
        self.secrets = secrets
        self.publisher = publisher
        self.driver = driver
        self.logger = logger
    }

    var maxAtOnce: Int { config.daemon.maxHooks }

    // MARK: what is due

    /// At start (and after a reload): every outstanding hook and webhook is
    /// queued; one that was `running` belonged to a daemon that stopped
    /// before it ended, and runs again.
    func load(now: Double) {
        let records: [JobRecord]
        do { records = try store.outstandingDeliveries() } catch {
            logger.error("cannot read the pending on_complete hooks and webhooks: \(error)")
            return
        }
        var interrupted: [(JobRecord, String)] = []
        for var r in records {
            var notes: [String] = []
            for what in What.allCases {
                guard var d = r[keyPath: what.field], d.isOutstanding else { continue }
                if d.state == .running {
                    // Ours (a reload while it runs) is left to end.
                    if busy(what, r.key) { continue }
                    let runs = 1 + hooksOf(r.key).hookRetries
                    d.last = "interrupted: the daemon stopped while it ran"
                    d.lastAt = now
                    if d.attempts >= runs {
                        // A run that takes the daemon down with it is not run for ever.
                        d.state = .failed
                        notes.append("\(what.name) was running when the daemon stopped (attempt \(d.attempts) of \(runs)); no attempts left, failed")
                    } else {
                        d.state = .pending
                        d.nextAt = now
                        notes.append("\(what.name) was running when the daemon stopped (attempt \(d.attempts)); it runs again")
                    }
                    r[keyPath: what.field] = d
                }
                if d.state == .pending { schedule(what, r.key, at: d.nextAt) }
            }
            if !notes.isEmpty { r.updatedAt = now; interrupted.append((r, notes.joined(separator: "; "))) }
        }
        guard !interrupted.isEmpty else { return }
        do {
            try store.batch { () throws(StoreError) in
                for (r, note) in interrupted { try store.save(r, event: note) }
            }
            for (r, note) in interrupted { logger.notice("\(note)", metadata: Logger.job(r.key)) }
        } catch {
            // They stay `running` on disk and are found again at the next start.
            logger.error("cannot record the interrupted hooks: \(error)")
        }
    }

    /// The machine published a job with a hook or a webhook: both are looked at now.
    func enqueue(_ key: JobKey, now: Double) {
        for what in What.allCases { schedule(what, key, at: now) }
    }

    private func schedule(_ what: What, _ key: JobKey, at t: Double) {
        guard queued[what]?.insert(key).inserted == true else { return }
        queues[what]?.insert(Due(at: t, key: key))
    }

    /// A run of it is under way in this process (a hook alive, a request in flight).
    private func busy(_ what: What, _ key: JobKey) -> Bool {
        what == .hook ? hooks[key] != nil : webhooks.values.contains { $0.key == key }
    }

    /// When the loop must wake for them: the next due one with a free slot, or a hook's deadline.
    func nextWake() -> Double? {
        var wake: Double?
        if hooks.count < maxAtOnce, let t = queues[.hook]?.min?.at { wake = t }
        if webhooks.count < maxAtOnce, let t = queues[.notify]?.min?.at { wake = min(wake ?? t, t) }
        for h in hooks.values where !h.killed { wake = min(wake ?? h.deadline, h.deadline) }
        return wake
    }

    /// The descriptors the loop polls for them: each hook's pidfd and output pipe.
    var fds: [Int32] { hooks.values.flatMap { [$0.pidfd] + ($0.output >= 0 ? [$0.output] : []) } }

    func owns(_ tag: Int) -> Bool { webhooks[tag] != nil }

    /// Starts what is due, within `max_hooks`: `running` is committed first.
    func startDue(now: Double) {
        var starting: [(What, JobRecord)] = []
        for what in What.allCases {
            let busy = what == .hook ? hooks.count : webhooks.count
            var free = maxAtOnce - busy
            while free > 0, let top = queues[what]?.min, top.at <= now {
                _ = queues[what]?.popMin()
                queued[what]?.remove(top.key)
                guard !starting.contains(where: { $0.0 == what && $0.1.key == top.key }),
                      let r = startable(what, top.key, now: now) else { continue }
                starting.append((what, r))
                free -= 1
            }
        }
        guard !starting.isEmpty else { return }
        var started: [(What, JobRecord)] = []
        do {
            try store.batch { () throws(StoreError) in
                for (what, var r) in starting {
                    guard var d = r[keyPath: what.field] else { continue }
                    d.state = .running
                    d.attempts += 1
                    r[keyPath: what.field] = d
                    r.updatedAt = now
                    try store.save(r, event: "\(what.name) started (attempt \(d.attempts) of \(1 + hooksOf(r.key).hookRetries))")
                    started.append((what, r))
                }
            }
        } catch {
            logger.error("cannot record the hooks about to start; they wait: \(error)")
            for (what, r) in starting { schedule(what, r.key, at: now + 1) }
            return
        }
        for (what, r) in started {
            switch what {
            case .hook: startHook(r, now: now)
            case .notify: startWebhook(r, now: now)
            }
        }
    }

    /// The job's record when its hook (or webhook) is pending and due; a
    /// later due time is queued again; one whose kind no longer has it is failed.
    private func startable(_ what: What, _ key: JobKey, now: Double) -> JobRecord? {
        let found: JobRecord?
        do { found = try store.job(key) } catch {
            logger.error("cannot read the job for its \(what.name): \(error)", metadata: Logger.job(key))
            return nil
        }
        guard var r = found, r.state.isTerminal, var d = r[keyPath: what.field], d.state == .pending else { return nil }
        // An earlier run (of a previous outcome) still under way: this one is queued again when it ends.
        if busy(what, key) { return nil }
        if d.nextAt > now {
            schedule(what, key, at: d.nextAt)
            return nil
        }
        let hooks = config.kind(key.kind)?.hooks
        let configured = what == .hook ? hooks?.onComplete != nil : hooks?.notifyURL != nil
        if !configured {
            d.state = .failed
            d.last = "not run: \(hooks == nil ? "kind \(key.kind) is no longer configured" : "\(what.rawValue) is no longer set")"
            d.lastAt = now
            r[keyPath: what.field] = d
            r.updatedAt = now
            let note = "\(what.name) \(d.last ?? "")"
            do { try store.save(r, event: note) } catch {
                logger.error("cannot record that \(what.name) will not run: \(error)", metadata: Logger.job(key))
            }
            logger.notice("\(note)", metadata: Logger.job(key))
            return nil
        }
        return r
    }



    // MARK: hooks

    /// The hook's environment: a few of the daemon's variables (never all:
    /// they may hold the kinds' credentials) and the job's.
    private func environment(_ r: JobRecord, attempt: Int) -> [String] {
        var env: [String] = []
        for name in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"] {
            if let v = getenv(name) { env.append("\(name)=\(String(cString: v))") }
        }
        if getenv("PATH") == nil { env.append("PATH=/usr/local/bin:/usr/bin:/bin") }
        func clean(_ s: String) -> String { s.replacingOccurrences(of: "\0", with: "") }
        env += [
            "JOBFETCH_KIND=\(r.key.kind)",
            "JOBFETCH_ID=\(r.key.id.rawValue)",
            "JOBFETCH_OUTCOME=\(r.state.rawValue)",
            "JOBFETCH_DIR=\(publisher.finalDirectory(r.key))",
            "JOBFETCH_REASON=\(clean(r.reason ?? ""))",
            "JOBFETCH_ATTEMPT=\(attempt)",
        ]
        return env
    }

    private func startHook(_ r: JobRecord, now: Double) {
        let settings = hooksOf(r.key)
        guard let argv = settings.onComplete, let d = r.hook else { return }
        let run = Run(r, d)
        let attempt = d.attempts
        let env = environment(r, attempt: attempt)
        var out: Int32 = -1
        let pid = withCStrings(argv) { a in withCStrings(env) { e in jf_spawn_hook(argv[0], a, e, &out) } }
        guard pid > 0 else {
            ended(.hook, r.key, run, ok: false, detail: "cannot start \(argv[0]): \(String(cString: strerror(-pid)))", now: now)
            return
        }
        let pidfd = jf_pidfd_open(pid)
        guard pidfd >= 0 else {
            // Without a pidfd the loop cannot see it end: stop it and try again later.
            let e = errno
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            close(out)
            ended(.hook, r.key, run, ok: false, detail: "cannot watch the hook (pidfd_open: \(String(cString: strerror(e))))", now: now)
            return
        }
        hooks[r.key] = Running(key: r.key, pid: pid, pidfd: pidfd, output: out, run: run, startedAt: now,
                               deadline: now + settings.hookTimeout)
        logger.info("on_complete started: \(argv[0]) (pid \(pid), attempt \(attempt))", metadata: Logger.job(r.key))
    }

    /// Reads the hooks' output, sees which ended, and kills those past `hook_timeout`.
    func service(now: Double) {
        if !unrecorded.isEmpty {
            let again = unrecorded
            unrecorded = []
            for u in again { ended(u.what, u.key, u.run, ok: u.ok, detail: u.detail, now: u.at) }
        }
        for key in Array(hooks.keys) {
            guard var h = hooks[key] else { continue }
            drain(&h)
            var p = pollfd(fd: h.pidfd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) == 1 {
                hooks[key] = nil
                reap(h, now: now)
                continue
            }
            if !h.killed && now >= h.deadline {
                // The whole group: what the hook started goes with it.
                kill(-h.pid, SIGKILL)
                h.killed = true
                logger.warning("on_complete ran past hook_timeout (\(Units.formatDuration(hooksOf(key).hookTimeout))): killed with its process group",
                               metadata: Logger.job(key))
            }
            hooks[key] = h
        }
    }

    private func hooksOf(_ key: JobKey) -> HookSettings { config.kind(key.kind)?.hooks ?? config.daemon.hooks }

    /// The hook exited: what it left in its process group is stopped
    /// (before the hook is reaped, so the group's number cannot have been
    /// reused), its last output is logged, and the outcome recorded.
    private func reap(_ h: Running, now: Double) {
        var h = h
        kill(-h.pid, h.killed ? SIGKILL : SIGTERM)
        var status: Int32 = 0
        var waited: Int32
        repeat { waited = waitpid(h.pid, &status, 0) } while waited < 0 && errno == EINTR
        let waitError = waited < 0 ? errno : 0
        drain(&h)
        if !h.partial.isEmpty { logLine(&h, h.partial) }
        if h.output >= 0 { close(h.output) }
        close(h.pidfd)
        let seconds = Units.formatDuration(max(0, now - h.startedAt))
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        let run = h.run
        if h.killed {
            ended(.hook, h.key, run, ok: false, detail: "killed after hook_timeout (\(Units.formatDuration(hooksOf(h.key).hookTimeout)))", now: now)
        } else if waitError != 0 {
            // No exit status (SIGCHLD ignored by whoever started the daemon?): not a success.
            ended(.hook, h.key, run, ok: false, detail: "its exit status is unknown (waitpid: \(String(cString: strerror(waitError))))", now: now)
        } else if exited {
            ended(.hook, h.key, run, ok: code == 0, detail: "exit \(code) after \(seconds)", now: now)
        } else {
            ended(.hook, h.key, run, ok: false, detail: "killed by signal \(status & 0x7f) after \(seconds)", now: now)
        }
    }

    /// Reads what the hook wrote so far and logs each whole line.
    private func drain(_ h: inout Running) {
        guard h.output >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 16384)
        var taken = 0
        while taken < Self.maxReadPerTurn {
            let n = buffer.withUnsafeMutableBytes { read(h.output, $0.baseAddress, $0.count) }
            if n > 0 {
                taken += n
                var start = 0
                for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
                    logLine(&h, h.partial + buffer[start..<i])
                    h.partial = []
                    start = i + 1
                }
                h.partial += buffer[start..<n]
                // A line without end is logged in pieces.
                if h.partial.count >= ServerText.maxBytes {
                    logLine(&h, h.partial)
                    h.partial = []
                }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n == 0 {
                // End of output: every writer closed it.
                close(h.output)
                h.output = -1
            }
            return
        }
    }

    private func logLine(_ h: inout Running, _ bytes: [UInt8]) {
        h.lines += 1
        if h.lines <= Self.maxLines {
            logger.info("on_complete: \(ServerText.shown(String(decoding: bytes, as: UTF8.self)))", metadata: Logger.job(h.key))
        } else if h.lines == Self.maxLines + 1 {
            logger.notice("on_complete: more than \(Self.maxLines) lines of output; the rest of this run's is not logged", metadata: Logger.job(h.key))
        }
    }

    // MARK: webhooks

    private func startWebhook(_ r: JobRecord, now: Double) {
        let settings = hooksOf(r.key)
        guard let url = settings.notifyURL, let secret = settings.notifySecret, let d = r.notify else { return }
        let run = Run(r, d)
        let body: [UInt8]
        do { body = try FileIO.readAll(publisher.finalDirectory(r.key) + "/job.json", limit: Self.maxBody) } catch {
            ended(.notify, r.key, run, ok: false, detail: "cannot read job.json: \(error)", now: now)
            return
        }
        let signature: String
        do { signature = try HMACSHA256.hex(key: Array(try secret.resolve(secrets).utf8), message: body) } catch {
            ended(.notify, r.key, run, ok: false, detail: "cannot sign: \(error)", now: now)
            return
        }
        // Never the kind's headers: the receiver is not the API.
        var request = HTTPRequest(url: url, headers: ["Content-Type: application/json", "X-Jobfetch-Signature: sha256=\(signature)"],
                                  body: .memory(limit: 64 * 1024), timeout: Self.webhookTimeout)
        request.post = body
        request.connectTimeout = config.daemon.connectTimeout
        do {
            webhooks[try http.start(request)] = (r.key, run, url.origin)
            logger.debug("webhook: POST to \(url.origin) (attempt \(d.attempts))", metadata: Logger.job(r.key))
        } catch {
            ended(.notify, r.key, run, ok: false, detail: "cannot start the request: \(error)", now: now)
        }
    }

    /// A webhook's answer: a 2xx is delivered; anything else (a redirect
    /// too: it is not followed) is retried.
    func answered(_ tag: Int, _ response: HTTPResponse, now: Double) {
        // The origin the request went to (a reload may have changed the URL since), only: receivers often carry a token in the path.
        guard let (key, run, url) = webhooks.removeValue(forKey: tag) else { return }
        var detail: String
        if let e = response.error, response.status == 0 {
            detail = "no answer from \(url): \(e)"
        } else if (300..<400).contains(response.status) {
            detail = "HTTP \(response.status) from \(url) (redirects are not followed)"
        } else {
            detail = "HTTP \(response.status) from \(url)"
        }
        // A status, then a failure (a timeout while the rest of the answer trickled in).
        if let e = response.error, response.status != 0, !response.bodyTooLarge { detail += ", then: \(e)" }
        // A 2xx is delivered, even with a body larger than is kept.
        let ok = (200..<300).contains(response.status) && (response.error == nil || response.bodyTooLarge)
        ended(.notify, key, run, ok: ok, detail: detail, now: now)
    }

    // MARK: outcomes

    /// Records how a run ended: succeeded, pending again after the kind's
    /// backoff, or failed once `hook_retries` retries are spent.
    private func ended(_ what: What, _ key: JobKey, _ run: Run, ok: Bool, detail: String, now: Double) {
        let log = Logger.job(key)
        let found: JobRecord?
        do { found = try store.job(key) } catch {
            logger.error("cannot record the end of \(what.name) (\(detail)): \(error); trying again", metadata: log)
            unrecorded.append((what, key, run, ok, detail, now))
            return
        }
        guard var r = found, var d = r[keyPath: what.field], d.state == .running, Run(r, d) == run else {
            logger.notice("\(what.name) ended (\(detail)), but the job was retried or forgotten meanwhile; not recorded", metadata: log)
            // What the new outcome has pending may have waited for this run to end.
            if found != nil { schedule(what, key, at: now) }
            return
        }
        let settings = hooksOf(r.key)
        let runs = 1 + settings.hookRetries
        d.last = detail
        d.lastAt = now
        let event: String
        if ok {
            d.state = .succeeded
            event = "\(what.name) succeeded: \(detail) (attempt \(d.attempts))"
            logger.info("\(event)", metadata: log)
        } else if d.attempts < runs {
            let backoff = config.kind(key.kind)?.backoff ?? Backoff(base: 5, cap: 300)
            d.state = .pending
            d.nextAt = now + backoff.retryDelay(after: d.attempts)
            schedule(what, key, at: d.nextAt)
            event = "\(what.name) failed: \(detail) (attempt \(d.attempts) of \(runs)); again at \(Timestamp.iso8601(d.nextAt))"
            logger.warning("\(event)", metadata: log)
        } else {
            d.state = .failed
            event = "\(what.name) failed: \(detail); gave up after \(d.attempts) attempt(s)"
            logger.error("\(event)", metadata: log)
        }
        r[keyPath: what.field] = d
        r.updatedAt = now
        do { try store.save(r, event: event) } catch {
            logger.error("cannot record the end of \(what.name): \(error); trying again", metadata: log)
            unrecorded.append((what, key, run, ok, detail, now))
            return
        }
        switch what {
        case .hook: driver.metrics.hookRan(key.kind, ok: ok)
        case .notify: driver.metrics.webhookSent(key.kind, ok: ok)
        }
    }

    // MARK: stop

    /// At shutdown: hooks still running are stopped (SIGTERM to their
    /// groups) and webhooks in flight dropped; neither was their own
    /// failure, so each is pending again with its attempt given back, and
    /// the next start runs it. (If that cannot be recorded they stay
    /// `running`, and the next start counts them as interrupted.)
    func shutdown(now: Double) {
        var interrupted: [(what: What, key: JobKey, run: Run)] = []
        // SIGTERM to every group, up to 2 s for the hooks to end, then SIGKILL: none outlives the daemon.
        for h in hooks.values { kill(-h.pid, SIGTERM) }
        let until = SystemClock.monotonic() + Self.stopGrace
        for h in hooks.values {
            var p = pollfd(fd: h.pidfd, events: Int16(POLLIN), revents: 0)
            let left = max(0, until - SystemClock.monotonic())
            if poll(&p, 1, Int32(left * 1000)) != 1 { logger.notice("on_complete did not stop on SIGTERM; killed", metadata: Logger.job(h.key)) }
            kill(-h.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(h.pid, &status, WNOHANG)
            if h.output >= 0 { close(h.output) }
            close(h.pidfd)
            interrupted.append((.hook, h.key, h.run))
        }
        hooks = [:]
        for (key, run, _) in webhooks.values { interrupted.append((.notify, key, run)) }
        webhooks = [:]
        guard !interrupted.isEmpty else { return }
        do {
            try store.batch { () throws(StoreError) in
                for (what, key, run) in interrupted {
                    guard var r = try store.job(key), var d = r[keyPath: what.field], d.state == .running, Run(r, d) == run else { continue }
                    d.state = .pending
                    d.attempts -= 1
                    d.nextAt = now
                    r[keyPath: what.field] = d
                    r.updatedAt = now
                    try store.save(r, event: "\(what.name) stopped by the daemon's shutdown (attempt \(run.attempt)); it runs again at the next start")
                }
            }
            for (what, key, _) in interrupted {
                logger.info("\(what.name) stopped by the shutdown; it runs again at the next start", metadata: Logger.job(key))
            }
        } catch {
            logger.error("cannot record the hooks stopped by the shutdown; the next start runs them again as interrupted: \(error)")
        }
    }
}

/// Calls `body` with `strings` as a NULL-terminated C array (argv, envp).
private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> T) -> T {
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
