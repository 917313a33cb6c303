import Glibc
import Logging
import JobFetchArtifacts
import JobFetchCore
import JobFetchStore
import JobFetchTransfer

/// The daemon's one event loop. Everything runs on the thread that calls
/// `run()`: libcurl's multi handle, the store, the spool. It sleeps in
/// `curl_multi_poll` until a transfer, a spool file, a request on its
/// `control` (stop, reload) or the next due job wakes it, so an idle daemon
/// uses no CPU. Signals are not its business: the service group in
/// `jobfetchd` turns them into `control` requests.
public final class Engine {
    var config: Config
    let configPath: String
    let logger: Logger
    let clock: any JobClock
    let store: any JobStoring
    let http: CurlMulti
    let inotify: Inotify
    public let control: EngineControl
    let publisher: Publisher
    let intake: SpoolIntake
    let lock: StateLock
    /// Notes the job at hand, so that one whose input crashes the daemon is failed, not retried forever.
    let crashGuard: CrashGuard
    let world: SystemWorld
    /// The jobs' machine, run over the store and the world.
    let driver: JobDriver
    let notifier = SystemdNotifier(environment: ConfigParser.Environment.process.variables)
    /// When systemd next hears from the loop (watchdog and status).
    var nextNotifyAt = 0.0
    var stopping = false
    var nextProgressAt = 0.0
    let startedAt: Double
    /// When the metrics file may next be written.
    var nextMetricsAt = 0.0
    /// keep_results and forget_after, and when they next sweep.
    var retention: Retention
    /// on_complete hooks and notify_url webhooks.
    let deliveries: Deliveries
    /// The shared store's last failure to answer, reported once.
    var storeProblem: String?

    public init(config: Config, configPath: String, logger: Logger, clock: any JobClock = SystemClock.shared) throws {
        self.config = config
        self.configPath = configPath
        self.logger = logger
        self.clock = clock
        startedAt = clock.now()
        let d = config.daemon
        retention = Retention(d)
        try FileIO.makeDirectories(d.stateDir, mode: 0o750)
        lock = try StateLock(stateDir: d.stateDir)
        crashGuard = try CrashGuard(stateDir: d.stateDir)
        try FileIO.makeDirectories(d.outputDir)
        try FileIO.makeDirectories(d.outputDir + "/.incoming")
        guard let opened = try d.openStore(readOnly: false) else { throw StoreError(code: 0, message: "not created", context: "open the store") }
        store = opened
        http = try CurlMulti(maxPerHost: d.maxHostConnections, maxTotal: d.maxPolls + d.maxDownloads * 16)
        inotify = try Inotify()
        control = try EngineControl()
        publisher = Publisher(outputDir: d.outputDir)
        let discarder = try Discarder(directory: d.outputDir + "/.incoming")
        let swept = discarder.sweep()
        if swept > 0 { logger.info("removed \(swept) discarded part(s) a previous run left in \(discarder.directory)") }
        world = SystemWorld(daemon: d, http: http, publisher: publisher, crashGuard: crashGuard, discarder: discarder, logger: logger)
        driver = JobDriver(config: config, store: store, world: world, clock: clock, logger: logger)
        deliveries = Deliveries(config: config, store: store, http: http, secrets: world.secrets, publisher: publisher, driver: driver, logger: logger)
        intake = SpoolIntake(spoolDir: d.spoolDir, store: store, inotify: inotify, logger: logger, clock: clock)
        intake.apply = { [unowned self] request, key in self.driver.apply(request, key) }
        driver.delivered = { [unowned self] key in self.deliveries.enqueue(key, now: self.clock.now()) }
        try intake.watch(kinds: config.kinds.map(\.name))
        // Last, once the spool is watched: consumers (and tests) can watch
        // <output>/<kind>/ for results, and its appearance means the daemon is set up.
        for kind in config.kinds { try FileIO.makeDirectories(d.outputDir + "/" + kind.name) }
    }

    /// Runs until `control` asks it to stop, on the calling thread.
    public func run() {
        let now = clock.now()
        intake.scanAll(now: now)
        if let key = crashGuard.repeatOffender { driver.failRepeatOffender(key, signal: crashGuard.lastCrashSignal) }
        deliveries.load(now: now)
        let shared: String
        if case .postgresql(_, let label) = config.daemon.store { shared = ", store \(label) as node \(config.daemon.nodeName)" } else { shared = "" }
        logger.notice("jobfetchd \(Version.string) started: \(config.kinds.count) kind(s), spool \(config.daemon.spoolDir), output \(config.daemon.outputDir)\(shared)")
        // The store is open and the spool scanned: from now on nothing dropped in is missed.
        notifier.send("READY=1\nSTATUS=\(statusLine())")
        nextNotifyAt = now + notifyInterval
        while !stopping {
            intake.recheck(now: clock.now())
            // Due work in one transaction, opened only when something is due.
            let turn = clock.now()
            if let due = driver.nextDue(now: turn), due <= turn { driver.batch { driver.startDueWork() } }
            maintainLeases(now: clock.now())
            deliveries.startDue(now: clock.now())
            let wake = nextWake(now: clock.now())
            let decoding = world.decodeFDs(among: driver.decodingKeys)
            let done = http.wait(extraFDs: [inotify.fd, control.wakeup.fd] + decoding + deliveries.fds, timeout: max(0, wake - clock.now()))
            // The answers of one turn are recorded in one transaction: one fsync, not one per poll.
            // (Spool intake is never inside it: a spool file goes only after its own commit.)
            if !done.isEmpty || driver.isDecoding {
                driver.batch {
                    for (tag, response) in done {
                        if deliveries.owns(tag) {
                            deliveries.answered(tag, response, now: clock.now())
                            continue
                        }
                        #if DEBUG
                        // Fault injection for the crash-guard test: a trap, as a bug on this job's input would be.
                        if let target = Self.faultCrashJob, let key = driver.key(forTag: tag), target == key.description {
                            crashGuard.begin(key)
                            preconditionFailure("JOBFETCH_FAULT_CRASH_JOB \(target)")
                        }
                        #endif
                        driver.answered(tag, response)
                    }
                    driver.finishDecodes()
                }
            }
            deliveries.service(now: clock.now())
            handleControl()
            notifySystemd(now: clock.now())
            sweepRetention(now: clock.now())
            writeMetrics(now: clock.now())
            recordProgress(now: clock.now())
            do { intake.handle(try inotify.read(), now: clock.now()) } catch {
                logger.error("reading spool events failed: \(error)")
            }
        }
        shutdown()
    }

    // MARK: scheduling

    /// When the loop must wake even if nothing arrives: the next due job in
    /// a class with a free slot, a settling spool file, or in a minute.
    func nextWake(now: Double) -> Double {
        var wake = now + 60
        if let t = driver.nextDue(now: now) { wake = min(wake, t) }
        if let t = intake.recheckAt { wake = min(wake, t) }
        if notifier.isActive { wake = min(wake, nextNotifyAt) }
        if driver.fetchesInFlight > 0 { wake = min(wake, nextProgressAt) }
        if config.daemon.metricsFile != nil { wake = min(wake, driver.metrics.dirty ? nextMetricsAt : nextMetricsAt + Self.metricsRefresh) }
        if retention.isOn { wake = min(wake, retention.nextAt) }
        if let t = deliveries.nextWake() { wake = min(wake, t) }
        if let t = store.maintainAt { wake = min(wake, t) }
        return wake
    }

    // MARK: a shared store

    /// With a PostgreSQL store: renews the leases of the jobs at work (the
    /// jobs whose lease was lost stop here), says which jobs were taken over
    /// from a daemon whose lease ran out, and whether the database answers.
    func maintainLeases(now: Double) {
        guard let shared = store as? PostgresStore else { return }
        for (key, from) in shared.takeOvers() {
            logger.notice("taking the job over from node \(from), whose lease on it ran out; it goes on from what is on disk", metadata: Logger.job(key))
        }
        for key in store.maintain(now: now) { driver.leaseLost(key) }
        if shared.unreachable != storeProblem {
            if let problem = shared.unreachable {
                logger.error("the store does not answer; claiming nothing until it does, and work whose lease runs out meanwhile stops: \(problem)")
            } else {
                logger.notice("the store answers again")
            }
            storeProblem = shared.unreachable
        }
    }

    #if DEBUG
    /// Debug builds only: the job (`kind/id`) whose answers make the daemon trap.
    static let faultCrashJob = getenv("JOBFETCH_FAULT_CRASH_JOB").map { String(cString: $0) }
    #endif


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
            var unchanged = fresh.daemon
            unchanged.logLevel = config.daemon.logLevel
            unchanged.keepResults = config.daemon.keepResults
            unchanged.forgetAfter = config.daemon.forgetAfter
            unchanged.hooks = config.daemon.hooks
            unchanged.maxHooks = config.daemon.maxHooks
            if unchanged != config.daemon {
                logger.notice("[daemon] settings changed in \(configPath); directories and limits take effect at the next restart")
            }
            var updated = fresh
            updated.daemon = config.daemon
            // The log level and retention take effect at once.
            updated.daemon.logLevel = fresh.daemon.logLevel
            updated.daemon.keepResults = fresh.daemon.keepResults
            updated.daemon.forgetAfter = fresh.daemon.forgetAfter
            // Hooks (the kinds carry theirs, merged with [daemon]'s) and max_hooks, too.
            updated.daemon.hooks = fresh.daemon.hooks
            updated.daemon.maxHooks = fresh.daemon.maxHooks
            retention = Retention(updated.daemon)
            config = updated
            LineLogHandler.setLevel(fresh.daemon.logLevel)
            try intake.watch(kinds: config.kinds.map(\.name))
            // As at start: a new kind's output directory exists once its spool is watched.
            for kind in config.kinds { try FileIO.makeDirectories(config.daemon.outputDir + "/" + kind.name) }
            driver.reconfigure(config)
            deliveries.config = config
            deliveries.load(now: clock.now())
            intake.scanAll(now: clock.now())
            logger.notice("configuration reloaded: \(config.kinds.count) kind(s)")
        } catch let errors as ConfigErrors {
            for p in errors.problems { logger.error("reload refused, keeping the running configuration: \(p)") }
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
        }
    }

    // MARK: progress

    static let progressInterval = 1.0

    /// Once a second while downloads run: progress to the store, deadlines enforced.
    func recordProgress(now: Double) {
        guard now >= nextProgressAt else { return }
        nextProgressAt = now + Self.progressInterval
        driver.recordProgress()
    }

    // MARK: metrics

    /// The file is rewritten at most once a second when something changed,
    /// and every 30 s regardless (the job counts).
    static let metricsRefresh = 30.0

    func writeMetrics(now: Double, force: Bool = false) {
        guard let path = config.daemon.metricsFile else { return }
        guard force || (driver.metrics.dirty && now >= nextMetricsAt) || now >= nextMetricsAt + Self.metricsRefresh else { return }
        let jobs = (try? store.counts()) ?? []
        do {
            // Rewritten every second on the engine's thread: no fsync, so a slow disk does not stop the downloads.
            try FileIO.writeAtomically(path, Array(driver.metrics.render(jobs: jobs, startedAt: startedAt).utf8), durable: false)
            driver.metrics.dirty = false
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
        let rate = driver.fetchesInFlight > 0 && driver.downloadRate > 0 ? " at \(Units.formatBytes(Int64(driver.downloadRate)))/s" : ""
        return "\(waiting) job(s) polling, \(by[.fetching] ?? 0) fetching; \(driver.pollsInFlight) status request(s) and \(driver.fetchesInFlight) download(s) in flight over \(max(0, http.inFlight - driver.pollsInFlight)) connection(s)\(rate); \(by[.succeeded] ?? 0) succeeded, \(by[.failed] ?? 0) failed"
    }

    func shutdown() {
        notifier.send("STOPPING=1\nSTATUS=stopping")
        driver.shutdown()
        deliveries.shutdown(now: clock.now())
        world.shutdown()
        if config.daemon.metricsFile != nil { writeMetrics(now: clock.now(), force: true) }
        crashGuard.stoppedCleanly()
        logger.notice("stopped")
    }
}
