import Logging
import JobFetchCore
import JobFetchStore

/// Runs the machine for every job: decides what is due within the limits
/// (`max_polls`, `max_downloads`, `rate_limit`), steps the machine with each
/// event and carries out its effects through a store and a world. It holds
/// what only the running process knows (requests in flight, token buckets,
/// warn-once sets) and reads no clock of its own: the daemon and the
/// simulator drive the same code.
public final class JobDriver {
    public private(set) var config: Config
    let store: any JobStoring
    let world: any JobWorld
    let clock: any JobClock
    public let logger: Logger
    /// Uniform draws in [0, 1) for jitter.
    let random: () -> Double

    /// Requests in flight, by tag.
    public private(set) var inFlight: [Int: JobRequest] = [:]
    public private(set) var pollsInFlight = 0
    public private(set) var fetchesInFlight = 0
    /// Whole downloads whose decompressor is draining.
    private(set) var awaitingDecode: [JobKey: (url: ParsedURL, response: HTTPResponse, bytes: Int64)] = [:]
    var buckets: [String: TokenBucket] = [:]
    /// `kind` + normalised status values already warned about.
    var warnedUnknownStatus: Set<String> = []
    var warnedMissingKind: Set<String> = []
    /// When the low-disk-space notice may be logged again.
    var lowSpaceNoticeAfter = 0.0
    public var metrics = Metrics()
    /// The last progress sample of each download in flight: time and bytes.
    var progressSamples: [JobKey: (at: Double, bytes: Int64)] = [:]
    /// The downloads' summed rate at the last progress sample, bytes/s.
    public private(set) var downloadRate = 0.0
    /// While `batch` runs, publishing waits for its commit: a job's
    /// directory is never published before its outcome is on disk.
    private var batching = false
    private var deferredPublishes: [JobRecord] = []
    /// Sees every transition (the simulator's invariant checks).
    public var observer: ((JobRecord, JobEvent, Transition) -> Void)?
    /// Hears of each job published with a pending hook or webhook, once its outcome is committed.
    public var delivered: ((JobKey) -> Void)?
    private var deferredDeliveries: [JobKey] = []

    /// A job due later is started up to this late, with the others due by
    /// then: at 1,000 polls/s the loop wakes for batches of about ten.
    static let dueSlack = 0.010

    public init(config: Config, store: any JobStoring, world: any JobWorld, clock: any JobClock, logger: Logger,
                random: @escaping () -> Double = { Jitter.next(in: 0...1) }) {
        self.config = config
        self.store = store
        self.world = world
        self.clock = clock
        self.logger = logger
        self.random = random
    }

    /// A new configuration (a reload): buckets and warn-once sets start afresh.
    public func reconfigure(_ config: Config) {
        self.config = config
        buckets = [:]
        warnedMissingKind = []
        warnedUnknownStatus = []
    }

    // MARK: stepping

    /// Steps the machine for `record` and carries out the effects; returns the record the machine made.
    @discardableResult
    public func step(_ record: JobRecord, _ event: JobEvent) -> JobRecord {
        let context = MachineContext(now: clock.now(), kind: config.kind(record.key.kind), daemon: config.daemon, jitter: random())
        let t = JobMachine.step(record, event, context)
        observer?(record, event, t)
        carryOut(t.effects, key: record.key)
        return t.record
    }

    private func carryOut(_ effects: [PlannedEffect], key: JobKey) {
        let log = Logger.job(key)
        for planned in effects {
            let effect = planned.effect
            func failed(_ problem: String) { step(planned.record, .effectFailed(effect, problem: problem)) }
            switch effect {
            case .save(let r, let event):
                do { try store.save(r, event: event) } catch {
                    logger.error("cannot save job state: \(error)", metadata: log)
                }
            case .log(let level, let message):
                logger.log(level: level, "\(message)", metadata: log)
            case .warnUnknownStatus(let kind, let status):
                let seen = kind + "\u{0}" + StatusMapping.normalize(status)
                if warnedUnknownStatus.count < JobMachine.maxWarnedStatuses, warnedUnknownStatus.insert(seen).inserted {
                    logger.warning("unknown API status \"\(status)\" for kind \(kind); still polling (further jobs with it are not reported)", metadata: log)
                    if warnedUnknownStatus.count == JobMachine.maxWarnedStatuses {
                        logger.warning("\(JobMachine.maxWarnedStatuses) different unknown API statuses seen; new ones are no longer reported until a reload")
                    }
                }
            case .kindMissing(let kind):
                if warnedMissingKind.insert(kind).inserted {
                    logger.warning("kind \(kind) is no longer in the configuration; its jobs wait until it is back")
                }
            case .lowDiskSpace(let message):
                let now = clock.now()
                if now >= lowSpaceNoticeAfter {
                    logger.notice("\(message); downloads wait", metadata: log)
                    lowSpaceNoticeAfter = now + 300
                }
            case .start(let request):
                guard let kind = config.kind(key.kind) else { failed("kind \(key.kind) is not configured"); return }
                if request.takesToken, let wait = takeToken(kind) {
                    step(planned.record, .noToken(wait: wait))
                    return
                }
                do {
                    let tag = try world.start(request, record: planned.record, kind: kind)
                    inFlight[tag] = request
                    store.claim(key)
                    if request.isPoll { pollsInFlight += 1 } else { fetchesInFlight += 1 }
                } catch {
                    failed(error.message)
                    return
                }
            case .abort:
                abortInFlight(key)
            case .stage(let documents, let inline):
                do { try world.stage(key, documents: documents, inline: inline) } catch { failed(error.message); return }
            case .clearStaging:
                world.clearStaging(key)
            case .truncatePages(let file, let bytes):
                do { try world.truncatePages(key, file: file, bytes: bytes) } catch { failed(error.message); return }
            case .appendPage(let file, let bytes):
                do { try world.appendPage(key, file: file, bytes: bytes) } catch { failed(error.message); return }
            case .discardPart:
                world.discardPart(key)
            case .awaitDecode(let url, let response, let bytes):
                if world.awaitDecode(key, bytes: bytes) {
                    awaitingDecode[key] = (url, response, bytes)
                    store.claim(key)
                    #if DEBUG
                    FaultStop.at("decoding", key)
                    #endif
                } else {
                    step(planned.record, .decodeFinished(url: url, response: response, bytes: bytes, outcome: .failed("the decompressor was lost")))
                }
            case .nameArtifact(let artifact):
                do { try world.nameArtifact(key, artifact) } catch { failed(error.message); return }
                #if DEBUG
                FaultStop.at("named", key)
                #endif
            case .publish(let r):
                if batching {
                    deferredPublishes.append(r)
                    continue
                }
                switch publishFenced(r) {
                case .done: break
                case .failed(let problem): failed(problem); return
                case .notHeld: return
                }
            case .removeStaging:
                world.removeStaging(key)
            case .deliver:
                if batching { deferredDeliveries.append(key) } else { delivered?(key) }
            case .count(let m):
                switch m {
                case .poll(let kind, let status): metrics.poll(kind, status: status)
                case .downloaded(let kind, let bytes): metrics.downloaded(kind, bytes: bytes)
                case .transferFailed(let kind): metrics.transferFailed(kind)
                case .publishFailed(let kind): metrics.publishFailed(kind)
                case .finished(let kind, let outcome): metrics.finished(kind, outcome: outcome)
                }
            }
        }
    }

    /// Runs `body` (a turn's steps) as one store transaction, one fsync,
    /// then publishes the jobs it finished. A commit that fails is logged;
    /// the records on disk are then the last committed ones, so their work
    /// is simply done again, and nothing was published ahead of them.
    /// `durable: false` for what is only reported (see `JobStoring.batchUnsynced`).
    public func batch(durable: Bool = true, _ body: () -> Void) {
        batching = true
        var ran = false
        do {
            let run = { () throws(StoreError) in
                ran = true
                body()
            }
            try durable ? store.batch(run) : store.batchUnsynced(run)
        } catch {
            logger.error("cannot commit job state: \(error)")
            deferredPublishes = []
            deferredDeliveries = []
            if !ran {
                // The transaction did not even begin (a store that does not answer): the
                // turn's answers are still handed on, each write then on its own, or they
                // would be lost with their requests counted in flight for ever.
                batching = false
                body()
            }
        }
        batching = false
        let committed = deferredDeliveries
        deferredDeliveries = []
        for key in committed { delivered?(key) }
        let pending = deferredPublishes
        deferredPublishes = []
        for r in pending {
            world.handling(r.key) { carryOut([PlannedEffect(effect: .publish(r), record: r)], key: r.key) }
        }
        // Jobs claimed this turn that now wait again are let go (a shared store's leases).
        store.settle()
    }

    enum Publication { case done, failed(String), notHeld }

    /// Publishes under the store's fence (with a shared store, only while
    /// this daemon provably holds the job) and records the outcome in the
    /// same transaction; its hooks are handed on once that commits, as in `batch`.
    private func publishFenced(_ r: JobRecord) -> Publication {
        let key = r.key
        var problem: String?
        batching = true
        defer { batching = false }
        do {
            try store.fenced(key) { () throws(StoreError) in
                switch world.publish(r, kind: config.kind(key.kind)) {
                case .published(let path): step(r, .published(path: path, recovered: false))
                case .resultMissing: step(r, .resultMissing)
                case .failed(let p): problem = p
                }
            }
        } catch {
            deferredDeliveries = []
            if error.leaseLost {
                logger.warning("not publishing: \(error.message)", metadata: Logger.job(key))
                abortInFlight(key)
            } else {
                logger.error("cannot publish: \(error)", metadata: Logger.job(key))
            }
            return .notHeld
        }
        let committed = deferredDeliveries
        deferredDeliveries = []
        for k in committed { delivered?(k) }
        return problem.map { .failed($0) } ?? .done
    }

    /// What the job has in flight, described for a log line; nil when nothing.
    func requestInFlight(_ key: JobKey) -> String? { inFlight.values.first { $0.key == key }?.described }

    /// A shared store says this daemon's lease on the job is gone (it was
    /// paused or cut off past it): its work stops here, nothing more of it
    /// is written or published; the daemon that takes it over resumes it.
    public func leaseLost(_ key: JobKey) {
        let running = requestInFlight(key)
        abortInFlight(key)
        logger.warning("lost the lease on this job\(running.map { " during \($0)" } ?? ""); stopped its work, another node takes it over; this node does not publish it",
                       metadata: Logger.job(key))
    }

    /// Takes a token from the kind's `rate_limit` bucket: nil, or how long until one is free.
    /// With a shared store, each of the daemons sharing it takes its share of the limit.
    func takeToken(_ kind: KindConfig) -> Double? {
        guard let whole = kind.rateLimit else { return nil }
        let limit = whole.share(store.liveNodes)
        let now = clock.now()
        // Rescaling to the share it already has changes nothing; a daemon joining or leaving changes the share.
        var bucket = buckets[kind.name]?.rescaled(limit) ?? TokenBucket(limit, now: now)
        let wait = bucket.take(now: now)
        buckets[kind.name] = bucket
        return wait
    }

    func record(_ key: JobKey) -> JobRecord? {
        do { return try store.job(key) } catch {
            logger.error("cannot read the job from the store: \(error)", metadata: Logger.job(key))
            return nil
        }
    }

    // MARK: what is due

    static let pollStates: [JobState] = [.registered, .polling]
    static let fetchStates: [JobState] = [.fetching, .publishing]

    /// Starts the due jobs there are free slots for.
    public func startDueWork() {
        let now = clock.now()
        let polls = store.dueKeys(in: Self.pollStates, now: now, limit: config.daemon.maxPolls - pollsInFlight)
        let fetches = store.dueKeys(in: Self.fetchStates, now: now, limit: config.daemon.maxDownloads - fetchesInFlight)
        for key in polls + fetches {
            guard let r = record(key) else { continue }
            world.handling(key) { step(r, .due(world.facts(for: r, kind: config.kind(key.kind)))) }
        }
    }

    /// When the next due job in a class with a free slot is due, or nil.
    public func nextDue(now: Double) -> Double? {
        func due(_ t: Double) -> Double { t <= now ? t : t + Self.dueSlack }
        var wake: Double?
        if pollsInFlight < config.daemon.maxPolls, let t = store.nextDue(in: Self.pollStates) { wake = due(t) }
        if fetchesInFlight < config.daemon.maxDownloads, let t = store.nextDue(in: Self.fetchStates) { wake = min(wake ?? .infinity, due(t)) }
        return wake
    }

    // MARK: answers

    /// The job a request in flight is for.
    public func key(forTag tag: Int) -> JobKey? { inFlight[tag]?.key }

    /// A request ended: its answer goes to the machine.
    public func answered(_ tag: Int, _ response: HTTPResponse) {
        guard let request = inFlight.removeValue(forKey: tag) else { return }
        release(request)
        let key = request.key
        // A daemon paused past its lease acts on nothing that arrived meanwhile: the job is another's now.
        guard store.holds(key, now: clock.now()) else {
            if request.purpose == .transfer { world.dropDecoder(key) }
            leaseLost(key)
            return
        }
        world.handling(key) {
            if let r = record(key) {
                switch request.purpose {
                case .poll: step(r, .pollAnswered(url: request.url, hop: request.hop, response: response))
                case .page: step(r, .pageAnswered(url: request.url, hop: request.hop, response: response))
                case .transfer: step(r, .transferFinished(url: request.url, hop: request.hop, response: response))
                }
            }
            // Only a whole download keeps its decompressor, and a redirect's next hop has its own.
            if request.purpose == .transfer && awaitingDecode[key] == nil && !inFlight.values.contains(where: { $0.key == key }) { world.dropDecoder(key) }
        }
    }

    /// Picks up the decompressors that have drained.
    public func finishDecodes() {
        guard !awaitingDecode.isEmpty else { return }
        for (key, outcome) in world.finishedDecodes(among: Set(awaitingDecode.keys)) {
            guard let pending = awaitingDecode.removeValue(forKey: key) else { continue }
            store.unclaim(key)
            guard store.holds(key, now: clock.now()) else { leaseLost(key); continue }
            guard let r = record(key), r.state == .fetching else { continue }
            world.handling(key) { step(r, .decodeFinished(url: pending.url, response: pending.response, bytes: pending.bytes, outcome: outcome)) }
        }
    }

    public var isDecoding: Bool { !awaitingDecode.isEmpty }
    public var decodingKeys: [JobKey] { Array(awaitingDecode.keys) }

    private func release(_ request: JobRequest) {
        store.unclaim(request.key)
        if request.isPoll { pollsInFlight -= 1 } else { fetchesInFlight -= 1 }
    }

    /// Stops the job's request in flight or decompression, if any; nothing is reported for it.
    func abortInFlight(_ key: JobKey) {
        if awaitingDecode.removeValue(forKey: key) != nil { store.unclaim(key) }
        world.dropDecoder(key)
        for (tag, request) in inFlight where request.key == key {
            world.cancel(tag, checkpoint: false)
            inFlight[tag] = nil
            release(request)
        }
    }

    // MARK: operators

    /// Carries out an operator's request; returns why it cannot be (the spool
    /// file is then rejected with that reason), or nil.
    public func apply(_ request: SpoolRequest, _ key: JobKey) -> String? {
        let found: JobRecord?
        do { found = try store.job(key) } catch { return "cannot read the job from the store: \(error)" }
        guard let r = found else { return "not registered" }
        switch request {
        case .register: return nil
        case .cancel:
            let running = requestInFlight(key)
            world.handling(key) { step(r, .cancelRequested(inFlight: running)) }
        case .retry:
            world.handling(key) { step(r, .retryRequested) }
        }
        return nil
    }

    /// A job at hand at two crashes since the last clean stop is failed.
    public func failRepeatOffender(_ key: JobKey, signal: Int32?) {
        guard let r = record(key), !r.state.isTerminal else { return }
        world.handling(key) { step(r, .crashedTwice(signal: signal)) }
    }

    // MARK: progress

    /// Once a second while downloads run: their bytes, expected length and
    /// rate go to the store (where `jobfetchctl list` reads them), and a
    /// download past its job's `timeout` is stopped.
    public func recordProgress() {
        let now = clock.now()
        var seen = Set<JobKey>()
        var total = 0.0
        var reports: [(JobRecord, JobEvent)] = []
        // Downloads and pages: a server that trickles cannot hold a slot past the job's timeout.
        // In the order the requests started: a run replays the same (a dictionary's order differs from process to process).
        for (tag, request) in inFlight.sorted(by: { $0.key < $1.key }) where request.usesDownloadSlot {
            let key = request.key
            guard let r = record(key) else { continue }
            let progress = world.progress(tag)
            if let kind = config.kind(key.kind), now - r.clockStart > kind.timeout {
                world.handling(key) { step(r, .deadlinePassed(bytesDone: progress?.bytes ?? r.bytesDone)) }
                continue
            }
            guard request.purpose == .transfer, let p = progress else { continue }
            seen.insert(key)
            var rate: Double?
            if let last = progressSamples[key], now > last.at, p.bytes >= last.bytes { rate = Double(p.bytes - last.bytes) / (now - last.at) }
            progressSamples[key] = (now, p.bytes)
            reports.append((r, .progressed(bytes: p.bytes, total: p.total, rate: rate)))
        }
        // Only reported (list's bytes, rate, ETA): committed without waiting for the disk, which the downloads may be filling.
        batch(durable: false) {
            for (r, event) in reports { total += step(r, event).rate ?? 0 }
        }
        for key in progressSamples.keys where !seen.contains(key) { progressSamples[key] = nil }
        downloadRate = total
    }

    // MARK: stop

    /// Stops every request; a download's part is flushed and recorded whole,
    /// so the next start resumes it without re-sending a byte.
    public func shutdown() {
        for (tag, request) in inFlight {
            if let bytes = world.cancel(tag, checkpoint: true) {
                logger.info("download interrupted by shutdown at \(Units.formatBytes(bytes)), on disk; it resumes from there at the next start",
                            metadata: Logger.job(request.key))
            } else {
                logger.info("interrupted by shutdown; resumes at the next start", metadata: Logger.job(request.key))
            }
        }
        inFlight = [:]
        for key in awaitingDecode.keys { world.dropDecoder(key) }
        awaitingDecode = [:]
    }
}
