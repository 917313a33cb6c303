import Glibc
import Logging

/// The daemon's one event loop. Everything runs on the thread that calls
/// `run()`: libcurl's multi handle, the store, the spool. It sleeps in
/// `curl_multi_poll` until a transfer, a spool file, a request on its
/// `control` (stop, reload) or the next due job wakes it, so an idle daemon
/// uses no CPU. Signals are not its business: the service group in
/// `jobfetchd` turns them into `control` requests.
public final class Engine {
    enum Purpose {
        case poll(JobKey, url: ParsedURL, hop: Int)
        /// One page of a paged result (counted with downloads).
        case page(JobKey, url: ParsedURL, hop: Int)
        case fetch(JobKey, url: ParsedURL, hop: Int)
        var key: JobKey {
            switch self {
            case .poll(let k, _, _), .page(let k, _, _), .fetch(let k, _, _): return k
            }
        }
        var isPoll: Bool { if case .poll = self { true } else { false } }
    }

    static let maxRedirects = 5
    static let statusBodyLimit = 16 << 20
    static let statusTimeout = 60.0
    static let dueSlack = 0.010

    var config: Config
    let configPath: String
    let logger: Logger
    let store: JobStore
    let http: CurlMulti
    let inotify: Inotify
    public let control: EngineControl
    let publisher: Publisher
    let intake: SpoolIntake
    let secrets = SecretFileCache()
    let lock: StateLock
    /// Notes the job at hand, so that one whose input crashes the daemon is failed, not retried forever.
    let crashGuard: CrashGuard
    let notifier = SystemdNotifier(environment: ConfigParser.Environment.process.variables)
    /// When systemd next hears from the loop (watchdog and status).
    var nextNotifyAt = 0.0

    var inFlight: [Int: Purpose] = [:]
    /// Decompressors following downloads in progress, by job.
    var decoders: [JobKey: PartInflater] = [:]
    /// Digests computed while downloading, by job: publishing need not read the artifact again.
    var knownDigests: [JobKey: [PublishedFile]] = [:]
    /// Downloads that are complete and wait for their decompressor to drain.
    var awaitingDecode: [JobKey: (url: ParsedURL, response: HTTPResponse, bytes: Int64)] = [:]
    var pollsInFlight = 0
    var fetchesInFlight = 0
    var buckets: [String: TokenBucket] = [:]
    /// `kind` + normalised status values already warned about.
    var warnedUnknownStatus: Set<String> = []
    var warnedMissingKind: Set<String> = []
    var stopping = false
    var metrics = Metrics()
    /// The last progress sample of each download in flight: time and bytes.
    var progressSamples: [JobKey: (at: Double, bytes: Int64)] = [:]
    var nextProgressAt = 0.0
    /// The downloads' summed rate at the last progress sample, bytes/s.
    var downloadRate = 0.0
    let startedAt = Clock.now()
    /// When the metrics file may next be written.
    var nextMetricsAt = 0.0
    /// When the low-disk-space notice may be logged again.
    var lowSpaceNoticeAfter = 0.0

    public init(config: Config, configPath: String, logger: Logger) throws {
        self.config = config
        self.configPath = configPath
        self.logger = logger
        let d = config.daemon
        try FileIO.makeDirectories(d.stateDir, mode: 0o750)
        lock = try StateLock(stateDir: d.stateDir)
        crashGuard = try CrashGuard(stateDir: d.stateDir)
        try FileIO.makeDirectories(d.outputDir)
        try FileIO.makeDirectories(d.outputDir + "/.incoming")
        store = try JobStore(path: d.databasePath)
        http = try CurlMulti(maxPerHost: d.maxHostConnections, maxTotal: d.maxPolls + d.maxDownloads)
        inotify = try Inotify()
        control = try EngineControl()
        publisher = Publisher(outputDir: d.outputDir)
        intake = SpoolIntake(spoolDir: d.spoolDir, store: store, inotify: inotify, logger: logger)
        intake.apply = { [unowned self] request, key in self.apply(request, key) }
        try intake.watch(kinds: config.kinds.map(\.name))
        // Last, once the spool is watched: consumers (and tests) can watch
        // <output>/<kind>/ for results, and its appearance means the daemon is set up.
        for kind in config.kinds { try FileIO.makeDirectories(d.outputDir + "/" + kind.name) }
    }

    /// Runs until `control` asks it to stop, on the calling thread.
    public func run() {
        let now = Clock.now()
        intake.scanAll(now: now)
        failRepeatOffender(now: now)
        logger.notice("jobfetchd \(Version.string) started: \(config.kinds.count) kind(s), spool \(config.daemon.spoolDir), output \(config.daemon.outputDir)")
        // The store is open and the spool scanned: from now on nothing dropped in is missed.
        notifier.send("READY=1\nSTATUS=\(statusLine())")
        nextNotifyAt = now + notifyInterval
        while !stopping {
            let now = Clock.now()
            intake.recheck(now: now)
            startDueWork(now: now)
            let wake = nextWake(now: now)
            let decoding = awaitingDecode.keys.compactMap { decoders[$0]?.doneFD }
            let done = http.wait(extraFDs: [inotify.fd, control.wakeup.fd] + decoding, timeout: max(0, wake - Clock.now()))
            // The answers of one turn are recorded in one transaction: one fsync, not one per poll.
            // (Spool intake is never inside it: a spool file goes only after its own commit.)
            if !done.isEmpty || !awaitingDecode.isEmpty {
                batch {
                    for (tag, response) in done {
                        guard let purpose = inFlight.removeValue(forKey: tag) else { continue }
                        finishRequest(purpose, response)
                    }
                    finishDecodes()
                }
            }
            handleControl()
            notifySystemd(now: Clock.now())
            writeMetrics(now: Clock.now())
            recordProgress(now: Clock.now())
            do { intake.handle(try inotify.read(), now: Clock.now()) } catch {
                logger.error("reading spool events failed: \(error)")
            }
        }
        shutdown()
    }

    // MARK: scheduling

    func startDueWork(now: Double) {
        do {
            let polls = store.dueKeys(in: [.registered, .polling], now: now, limit: config.daemon.maxPolls - pollsInFlight)
            for key in polls { if let r = try store.job(key) { crashGuard.handling(key) { startPoll(r, now: now) } } }
            let fetches = store.dueKeys(in: [.fetching, .publishing], now: now, limit: config.daemon.maxDownloads - fetchesInFlight)
            for key in fetches {
                guard let r = try store.job(key) else { continue }
                crashGuard.handling(key) {
                    if r.state == .publishing { publishRecovered(r) } else if r.pageNext != nil { startPage(r, now: now) } else { startFetch(r, now: now) }
                }
            }
        } catch { logger.error("cannot read due jobs from the store: \(error)") }
    }

    /// When the loop must wake even if nothing arrives: the next due job in
    /// a class with a free slot, a settling spool file, or in a minute.
    func nextWake(now: Double) -> Double {
        var wake = now + 60
        // A job due later is started up to `dueSlack` late, with the others
        // due by then: at 1,000 polls/s the loop wakes for batches of about
        // ten, not for each job. (What is due now starts now: a new job's
        // first poll is not delayed.)
        func due(_ t: Double) -> Double { t <= now ? t : t + Self.dueSlack }
        if pollsInFlight < config.daemon.maxPolls, let t = store.nextDue(in: [.registered, .polling]) {
            wake = min(wake, due(t))
        }
        if fetchesInFlight < config.daemon.maxDownloads, let t = store.nextDue(in: [.fetching, .publishing]) {
            wake = min(wake, due(t))
        }
        if let t = intake.recheckAt { wake = min(wake, t) }
        if notifier.isActive { wake = min(wake, nextNotifyAt) }
        if fetchesInFlight > 0 { wake = min(wake, nextProgressAt) }
        if config.daemon.metricsFile != nil { wake = min(wake, metrics.dirty ? nextMetricsAt : nextMetricsAt + Self.metricsRefresh) }
        return wake
    }

    func begin(_ purpose: Purpose, request: HTTPRequest) -> Bool {
        do {
            let tag = try http.start(request)
            inFlight[tag] = purpose
            store.claim(purpose.key)
            if purpose.isPoll { pollsInFlight += 1 } else { fetchesInFlight += 1 }
            return true
        } catch {
            // The job is still due: without a later time the loop would try
            // it again at once, every turn. (Callers save nothing after this.)
            if var r = try? store.job(purpose.key), let kind = config.kind(purpose.key.kind) {
                scheduleRetry(&r, kind: kind, problem: "cannot start a request: \(error)", response: nil, now: Clock.now(), level: .error)
            } else {
                logger.error("cannot start a request: \(error)", metadata: Logger.job(purpose.key))
            }
            return false
        }
    }

    func finishRequest(_ purpose: Purpose, _ response: HTTPResponse) {
        release(purpose)
        crashGuard.begin(purpose.key)
        defer { crashGuard.end() }
        #if DEBUG
        // Fault injection for the crash-guard test: a trap, as a bug on this job's input would be.
        if let target = Self.faultCrashJob, target == purpose.key.description { preconditionFailure("JOBFETCH_FAULT_CRASH_JOB \(target)") }
        #endif
        switch purpose {
        case .poll(let key, let url, let hop): handlePoll(key, url: url, hop: hop, response)
        case .page(let key, let url, let hop): handlePage(key, url: url, hop: hop, response)
        case .fetch(let key, let url, let hop): handleFetch(key, url: url, hop: hop, response)
        }
    }

    private func release(_ purpose: Purpose) {
        store.unclaim(purpose.key)
        if purpose.isPoll { pollsInFlight -= 1 } else { fetchesInFlight -= 1 }
    }

    /// Stops the job's request in flight, if any (an operator's cancel);
    /// nothing is reported for it. Returns what was stopped.
    @discardableResult
    func abortInFlight(_ key: JobKey) -> Purpose? {
        if awaitingDecode.removeValue(forKey: key) != nil { store.unclaim(key) }
        dropDecoder(key)
        guard let (tag, purpose) = inFlight.first(where: { $0.value.key == key }) else { return nil }
        http.cancel(tag)
        inFlight[tag] = nil
        release(purpose)
        return purpose
    }

    #if DEBUG
    /// Debug builds only: the job (`kind/id`) whose answers make the daemon trap.
    static let faultCrashJob = getenv("JOBFETCH_FAULT_CRASH_JOB").map { String(cString: $0) }
    #endif

    /// A job that was at hand at two crashes since the last clean stop is failed
    /// now: tried again, it would most likely crash the daemon a third time.
    func failRepeatOffender(now: Double) {
        guard let key = crashGuard.repeatOffender else { return }
        guard var r = try? store.job(key), !r.state.isTerminal else { return }
        let signal = crashGuard.lastCrashSignal.map { " (last by signal \($0))" } ?? ""
        logger.error("the daemon stopped twice while handling this job\(signal); failing it so that it cannot stop the daemon again",
                     metadata: Logger.job(key))
        r.reason = "the daemon stopped twice while handling this job\(signal): its input may trip a bug; see the daemon's log" +
            (r.lastError.map { " (last problem: \($0))" } ?? "")
        crashGuard.handling(key) { complete(&r, .failed, now: now) }
    }

    // MARK: stop and reload

    func handleControl() {
        for request in control.take() {
            switch request {
            case .reload: reload()
            case .stop:
                if !stopping { logger.notice("shutting down: transfers in flight are checkpointed") }
                stopping = true
            }
        }
    }

    func reload() {
        do {
            let fresh = try ConfigParser.load(path: configPath)
            if fresh.daemon != config.daemon {
                logger.notice("[daemon] settings changed in \(configPath); directories and limits take effect at the next restart")
            }
            var updated = fresh
            updated.daemon = config.daemon
            updated.daemon.logLevel = fresh.daemon.logLevel
            config = updated
            LineLogHandler.setLevel(fresh.daemon.logLevel)
            try intake.watch(kinds: config.kinds.map(\.name))
            // As at start: a new kind's output directory exists once its spool is watched.
            for kind in config.kinds { try FileIO.makeDirectories(config.daemon.outputDir + "/" + kind.name) }
            buckets = [:]
            warnedMissingKind = []
            warnedUnknownStatus = []
            intake.scanAll(now: Clock.now())
            logger.notice("configuration reloaded: \(config.kinds.count) kind(s)")
        } catch let errors as ConfigErrors {
            for p in errors.problems { logger.error("reload refused, keeping the running configuration: \(p)") }
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
        }
    }

    /// Runs `body` with the store's updates in one transaction. A commit that
    /// fails is logged; the jobs' records on disk are then the last committed
    /// ones, so their work is simply done again.
    func batch(_ body: () -> Void) {
        do { try store.batch { () throws(SQLiteError) in body() } } catch {
            logger.error("cannot commit job state: \(error)")
        }
    }

    // MARK: progress

    static let progressInterval = 1.0

    /// Once a second while downloads run: their bytes, expected length and
    /// rate go to the store, where `jobfetchctl list` reads them.
    func recordProgress(now: Double) {
        guard now >= nextProgressAt else { return }
        nextProgressAt = now + Self.progressInterval
        enforceDeadlines(now: now)
        var seen = Set<JobKey>()
        var total = 0.0
        defer { downloadRate = total }
        for (tag, purpose) in inFlight {
            guard case .fetch(let key, _, _) = purpose, let p = http.progress(tag), var r = try? store.job(key) else { continue }
            seen.insert(key)
            if let last = progressSamples[key], now > last.at, p.bytes >= last.bytes {
                let instant = Double(p.bytes - last.bytes) / (now - last.at)
                r.rate = r.rate.map { 0.7 * $0 + 0.3 * instant } ?? instant
            }
            progressSamples[key] = (now, p.bytes)
            r.bytesDone = p.bytes
            r.bytesTotal = p.total ?? r.bytesTotal
            if let length = p.total, length > 0 { r.progress = Double(p.bytes) / Double(length) }
            total += r.rate ?? 0
            save(r)
        }
        for key in progressSamples.keys where !seen.contains(key) { progressSamples[key] = nil }
    }

    /// A job's `timeout` holds while its result transfers, too: a server
    /// that trickles bytes (above `low_speed_limit`) cannot hold a download
    /// slot past it. Checked with the progress, once a second.
    func enforceDeadlines(now: Double) {
        for purpose in Array(inFlight.values) where !purpose.isPoll {
            let key = purpose.key
            guard var r = try? store.job(key), r.state == .fetching, let kind = config.kind(key.kind), now - r.clockStart > kind.timeout else { continue }
            if let tag = inFlight.first(where: { $0.value.key == key })?.key, let p = http.progress(tag) { r.bytesDone = p.bytes }
            abortInFlight(key)
            crashGuard.handling(key) {
                _ = failIfTimedOut(&r, kind: kind, now: now, doing: "the result could not be fetched (\(Units.formatBytes(r.bytesDone)) had arrived)")
            }
        }
    }

    // MARK: metrics

    /// The file is rewritten at most once a second when something changed,
    /// and every 30 s regardless (the job counts).
    static let metricsRefresh = 30.0

    func writeMetrics(now: Double, force: Bool = false) {
        guard let path = config.daemon.metricsFile else { return }
        guard force || (metrics.dirty && now >= nextMetricsAt) || now >= nextMetricsAt + Self.metricsRefresh else { return }
        let jobs = (try? store.counts()) ?? []
        do {
            try FileIO.writeAtomically(path, Array(metrics.render(jobs: jobs, startedAt: startedAt).utf8))
            metrics.dirty = false
        } catch {
            logger.error("cannot write metrics_file: \(error)")
        }
        nextMetricsAt = now + 1
    }

    // MARK: systemd

    /// Half the watchdog period when systemd set one, else a status refresh every 30 s.
    var notifyInterval: Double { min(notifier.watchdogInterval ?? 30, 30) }

    /// `WATCHDOG=1` proves the loop itself turns (a stuck engine stops sending
    /// and systemd restarts it); `STATUS=` carries the one-line summary.
    func notifySystemd(now: Double) {
        guard notifier.isActive, now >= nextNotifyAt else { return }
        nextNotifyAt = now + notifyInterval
        notifier.send((notifier.watchdogInterval != nil ? "WATCHDOG=1\n" : "") + "STATUS=\(statusLine())")
    }

    /// For `systemctl status`: jobs by phase and the requests in flight.
    func statusLine() -> String {
        var by: [JobState: Int] = [:]
        if let counts = try? store.counts() { for c in counts { by[c.state, default: 0] += c.count } }
        let waiting = (by[.registered] ?? 0) + (by[.polling] ?? 0)
        let rate = fetchesInFlight > 0 && downloadRate > 0 ? " at \(Units.formatBytes(Int64(downloadRate)))/s" : ""
        return "\(waiting) job(s) polling, \(by[.fetching] ?? 0) fetching; \(pollsInFlight) status request(s) and \(fetchesInFlight) download(s) in flight\(rate); \(by[.succeeded] ?? 0) succeeded, \(by[.failed] ?? 0) failed"
    }

    func shutdown() {
        notifier.send("STOPPING=1\nSTATUS=stopping")
        // Requests in flight stop; a download's part is flushed and recorded
        // whole, so the next start resumes it without re-sending a byte.
        for (tag, purpose) in inFlight {
            if let bytes = http.cancel(tag, checkpoint: true) {
                logger.info("download interrupted by shutdown at \(Units.formatBytes(bytes)), on disk; it resumes from there at the next start",
                            metadata: Logger.job(purpose.key))
            } else {
                logger.info("interrupted by shutdown; resumes at the next start", metadata: Logger.job(purpose.key))
            }
        }
        inFlight = [:]
        for key in Array(decoders.keys) { dropDecoder(key) }
        if config.daemon.metricsFile != nil { writeMetrics(now: Clock.now(), force: true) }
        crashGuard.stoppedCleanly()
        logger.notice("stopped")
    }

    // MARK: helpers

    func kindConfig(_ key: JobKey, record: inout JobRecord, now: Double) -> KindConfig? {
        if let k = config.kind(key.kind) { return k }
        if warnedMissingKind.insert(key.kind).inserted {
            logger.warning("kind \(key.kind) is no longer in the configuration; its jobs wait until it is back")
        }
        record.nextAt = now + 60
        save(record)
        return nil
    }

    /// The kind of a job that is due, or nil when the job must wait (its
    /// kind is gone from the config) or has just failed at its `timeout`.
    func dueKind(_ r: inout JobRecord, now: Double, doing: String) -> KindConfig? {
        guard let kind = kindConfig(r.key, record: &r, now: now) else { return nil }
        return failIfTimedOut(&r, kind: kind, now: now, doing: doing) ? nil : kind
    }

    /// What to do with a 3xx answer.
    enum Redirect {
        case follow(ParsedURL)
        /// No `Location`: may heal, retried with backoff.
        case unusable(String)
        /// A target that is never fetched (another scheme, a downgrade to
        /// plain http, not a URL) or a redirect loop: the job fails.
        case refused(String)
    }

    func redirectTarget(_ response: HTTPResponse, from url: ParsedURL, hop: Int, kind: KindConfig) -> Redirect {
        let status = response.status
        guard hop < Self.maxRedirects else { return .refused("\(url.redacted) answered HTTP \(status): more than \(Self.maxRedirects) redirects in a row") }
        guard let location = response.headers["location"] else { return .unusable("\(url.redacted) answered HTTP \(status) with no Location") }
        let next: ParsedURL
        do { next = try ParsedURL(location, relativeTo: url) } catch {
            return .refused("\(url.redacted) redirected to a URL that is never fetched: \(error.message)")
        }
        if let problem = Self.insecureProblem(next, kind: kind) { return .refused("\(url.redacted) redirected: \(problem)") }
        return .follow(next)
    }

    static func credentialsProblem(_ url: ParsedURL, status: Int, kind: KindConfig) -> String {
        "credentials rejected by \(url.origin) (HTTP \(status)) for kind \(kind.name): fix the token; the job stays registered"
    }

    /// Headers for a request to `url`: the kind's credentials only when
    /// `url` is on the status endpoint's origin.
    func headers(for kind: KindConfig, url: ParsedURL, statusOrigin: String) throws(JobFetchError) -> [String] {
        guard url.origin == statusOrigin else { return [] }
        var out: [String] = []
        for t in kind.headers { out.append(try t.resolve(secrets)) }
        return out
    }

    func save(_ r: JobRecord, event: String? = nil) {
        do { try store.save(r, event: event) } catch {
            logger.error("cannot save job state: \(error)", metadata: Logger.job(r.key))
        }
    }

    /// Records a problem that heals by waiting: backs off (exponentially,
    /// with jitter; `Retry-After` wins when the server gives one) and logs.
    func scheduleRetry(_ r: inout JobRecord, kind: KindConfig, problem: String, response: HTTPResponse?,
                       now: Double, level: Logger.Level = .warning) {
        r.attempts += 1
        r.lastError = problem
        var delay = kind.backoff.retryDelay(after: r.attempts)
        if let after = response?.retryAfter(now: now) { delay = max(min(after, 6 * 3600), 1) }
        // Never past the job's timeout: a server's Retry-After cannot park a job beyond it.
        r.nextAt = min(now + delay, max(now, r.clockStart + kind.timeout) + 1)
        logger.log(level: level, "\(problem); retrying in \(Units.formatDuration(delay))", metadata: Logger.job(r.key))
        save(r, event: r.attempts == 1 ? problem : nil)
    }

    /// Fails the job if it is older than its kind's `timeout`; true if it did.
    func failIfTimedOut(_ r: inout JobRecord, kind: KindConfig, now: Double, doing: String) -> Bool {
        guard now - r.clockStart > kind.timeout else { return false }
        r.reason = "timed out: \(doing) within \(Units.formatDuration(kind.timeout)) of \(r.retries > 0 ? "the last retry" : "registration")" + (r.lastError.map { " (last problem: \($0))" } ?? "")
        complete(&r, .failed, now: now)
        return true
    }

    /// Takes a token from the kind's `rate_limit` bucket; when there is
    /// none, reschedules the job for when there will be and returns false.
    func takeToken(_ r: inout JobRecord, kind: KindConfig, now: Double) -> Bool {
        guard let limit = kind.rateLimit else { return true }
        var bucket = buckets[kind.name] ?? TokenBucket(limit, now: now)
        let wait = bucket.take(now: now)
        buckets[kind.name] = bucket
        guard let wait else { return true }
        r.nextAt = now + wait
        save(r)
        return false
    }

    /// Why `url` may not be fetched for `kind`, or nil. Plain http is for a
    /// kind with `allow_insecure_http`, or for loopback when the kind's own
    /// status endpoint is plain http on loopback (a local API): an https API
    /// cannot send the daemon to plain http, not even on this machine.
    static func insecureProblem(_ url: ParsedURL, kind: KindConfig) -> String? {
        guard url.scheme != "https", !kind.allowInsecureHTTP else { return nil }
        if url.isLoopback && kind.statusURL.lowercased().hasPrefix("http://") { return nil }
        return url.isLoopback
            ? "\(url.redacted) is plain http while the status endpoint is https: a downgrade is refused; set allow_insecure_http = yes to allow it"
            : "\(url.redacted) is plain http on a non-loopback host; set allow_insecure_http = yes to allow it"
    }
}
