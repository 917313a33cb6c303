import Glibc
import Logging
@testable import JobFetchArtifacts
@testable import JobFetchCore
@testable import JobFetchEngine
@testable import JobFetchStore

/// One seeded run: a few kinds and jobs, simulated APIs for their presets
/// with scripted and random faults, an operator who adds, cancels and
/// retries through a model of the spool, and unclean stops at effect
/// boundaries. The machine and the driver are the daemon's own; after every
/// step the invariants are checked, and the first broken one ends the run.
final class Simulation {
    let seed: UInt64
    var rng: SimRandom
    var faults: SimRandom
    let clock: SimClock
    let store = MemoryStore()
    var config: Config
    var world: SimWorld!
    var driver: JobDriver!
    var violation: Violation?
    var steps = 0

    // The server side.
    struct Script {
        enum Shape: Equatable { case url(sameOrigin: Bool), inline, pages(Int), none }
        var notFound: Int
        var running: Int
        var fails: Bool
        var shape: Shape
        var size: Int
        var version = 1
    }
    struct Job {
        var kind: String
        var script: Script
        var answered = 0
        var registeredDrop: Double?
        /// The outcome each generation (`retries`) must be published with.
        var expected: [Int: Outcome] = [:]
    }
    var jobs: [JobKey: Job] = [:]
    var disk: [JobKey: SimDisk] = [:]
    struct Publication { let generation: Int; let outcome: Outcome; let finishedAt: Double? }
    var published: [JobKey: [Publication]] = [:]
    var freeSpace: Int64 = 1 << 40
    /// When a kind's token is refused (401) until an operator rotates it.
    var authBroken: [String: ClosedRange<Double>] = [:]
    var diskFaultRate = 0.02
    /// Consecutive failed answers per job since its last good one.
    var failures: [JobKey: Int] = [:]

    // Requests in flight on the simulated network.
    struct InFlight { let request: JobRequest; let kind: KindConfig; let at: Double; let deliverAt: Double; let resumeFrom: Int64; let version: Int? }
    var network: [Int: InFlight] = [:]
    var buckets: [String: (tokens: Double, last: Double)] = [:]

    // The operator and the spool.
    enum Action { case drop(SpoolRequest, String, [JobID]) }
    var actions: [(at: Double, action: Action)] = []
    struct SpoolEntry { let request: SpoolRequest; let kind: String; let ids: [JobID]; let droppedAt: Double }
    var spoolWaiting: [SpoolEntry] = []
    var unsettled: [SpoolEntry] = []
    var recheckAt: Double?

    // Unclean stops.
    var crashTimes: [Double] = []
    var effectBudget: Int?
    var downUntil: Double?
    var nextProgress = 0.0

    static let horizon = 30 * 86400.0
    var lastTime = 0.0
    var sameTime = 0

    init(seed: UInt64) throws {
        self.seed = seed
        rng = SimRandom(seed: seed)
        faults = SimRandom(seed: seed ^ 0xA5A5_5A5A_F00D_BEEF)
        clock = SimClock(1_800_000_000)
        config = try Self.makeConfig(&rng)
        makeScenario()
        // Some kinds give up early: their jobs may fail at `timeout`, never before it.
        var limits = SimRandom(seed: seed ^ 0x7170_7170_7170_7170)
        for i in config.kinds.indices where limits.chance(0.2) { config.kinds[i].timeout = Double(limits.int(5...30)) * 60 }
        var auth = SimRandom(seed: seed ^ 0x0401_0401_0401_0401)
        for kind in config.kinds where auth.chance(0.3) {
            let from = clock.t + auth.unit() * 600
            authBroken[kind.name] = from...(from + 30 + auth.unit() * 600)
        }
        store.failWrites = { [unowned self] in self.spend() }
    }

    static let presets = ["dataset", "bulk-job", "bulk-process", "export", "job"]

    static func makeConfig(_ rng: inout SimRandom) throws -> Config {
        var text = """
            [daemon]
            spool_dir = /sim/spool
            state_dir = /sim/state
            output_dir = /sim/out
            max_polls = \(rng.int(1...4))
            max_downloads = \(rng.int(1...3))
            min_free_space = 1M

            """
        for k in 0..<rng.int(1...2) {
            text += """
                [kind k\(k)]
                preset = \(rng.pick(presets))
                status_url = https://api\(k).sim/v1/jobs/{id}
                header = Authorization: Bearer sim-token-\(k)
                poll_interval = \(rng.int(1...10))s
                max_poll_interval = \(rng.int(30...120))s
                timeout = 60d
                not_found_grace = 1h
                \(rng.chance(0.5) ? "rate_limit = \(rng.int(1...3))/s" : "")

                """
        }
        return try ConfigParser.parse(text, file: "sim.conf", environment: .init([:]), secrets: .syntaxOnly)
    }

    func makeScenario() {
        let start = clock.t
        var time = start - 1
        for _ in 0..<rng.int(1...3) {
            let kind = rng.pick(config.kinds)
            var ids: [JobID] = []
            for _ in 0..<rng.int(1...4) {
                guard let id = try? JobID("j\(rng.int(0...9999))") else { continue }
                let key = JobKey(kind: kind.name, id: id)
                guard jobs[key] == nil else { continue }
                ids.append(id)
                jobs[key] = Job(kind: kind.name, script: makeScript(kind), registeredDrop: time)
                if rng.chance(0.3) {
                    // A cancel soon after the add (at start, while the add still settles), or much later.
                    let at = rng.chance(0.5) ? time + 0.2 + rng.unit() * 1.5 : time + rng.unit() * 600
                    actions.append((at, .drop(.cancel, kind.name, [id])))
                }
                if rng.chance(0.25) { actions.append((time + 60 + rng.unit() * 3000, .drop(.retry, kind.name, [id]))) }
            }
            if !ids.isEmpty { actions.append((time, .drop(.register, kind.name, ids))) }
            time += rng.chance(0.5) ? rng.unit() * 2 : rng.unit() * 120
        }
        actions.sort { $0.at < $1.at }
        // The daemon starts half a second in; unclean stops come later.
        downUntil = start - 0.5
        clock.t = start - 1
        for _ in 0..<rng.int(0...3) { crashTimes.append(start + rng.unit() * 900) }
        crashTimes.sort()
    }

    func makeScript(_ kind: KindConfig) -> Script {
        let shape: Script.Shape
        switch kind.preset {
        case "bulk-job": shape = rng.chance(0.3) ? .inline : .url(sameOrigin: rng.chance(0.3))
        case "bulk-process": shape = .pages(rng.int(0...250))
        case "export": shape = .none
        default: shape = .url(sameOrigin: rng.chance(0.3))
        }
        return Script(notFound: rng.chance(0.2) ? rng.int(1...2) : 0, running: rng.int(0...6), fails: rng.chance(0.2), shape: shape, size: rng.int(1...20000))
    }

    // MARK: the run

    func run() -> Violation? {
        while violation == nil {
            steps += 1
            let now = clock.t
            if now == lastTime { sameTime += 1 } else { sameTime = 0; lastTime = now }
            if sameTime > 1000 {
                let active = ((try? store.list()) ?? []).filter { !$0.state.isTerminal }.map { "\($0.key) \($0.state.rawValue) due \($0.nextAt - now)" }
                fail("the loop spins: 1,000 turns without time moving (\(active.joined(separator: ", ")); claimed \(store.claimed.count), network \(network.count), decoding \(driver?.isDecoding ?? false), recheck \(recheckAt.map { $0 - now } ?? -1), unsettled \(unsettled.count))")
            }
            if let until = downUntil {
                guard now >= until else { arrivals(); advance(); continue }
                startDaemon()
            }
            spoolTurn()
            // As the engine's loop: the answers of a turn in one transaction, the due work in another.
            driver.batch {
                deliver()
                driver.finishDecodes()
            }
            driver.batch { driver.startDueWork() }
            if now >= nextProgress && driver.fetchesInFlight > 0 {
                nextProgress = now + 1
                driver.recordProgress()
            }
            if world.dead { crash(); continue }
            checkInvariants()
            if let t = crashTimes.first, t <= now {
                crashTimes.removeFirst()
                effectBudget = rng.int(0...12)
            }
            if finished() { break }
            if now > clock.t { fail("time went back") }
            advance()
            if clock.t > now + Self.horizon || clock.t > 1_800_000_000 + Self.horizon {
                fail("jobs never finished: " + jobs.keys.compactMap { k in (try? store.job(k)).flatMap { $0 }.map { "\(k) \($0.state.rawValue) next \($0.nextAt - clock.t)s" } }.joined(separator: ", "))
            }
        }
        return violation
    }

    func finished() -> Bool {
        guard actions.isEmpty, unsettled.isEmpty, spoolWaiting.isEmpty, network.isEmpty, !driver.isDecoding else { return false }
        return jobs.keys.allSatisfy { ((try? store.job($0)) ?? nil)?.state.isTerminal ?? true }
    }

    /// Moves the clock to the next thing that happens.
    func advance() {
        let now = clock.t
        var next = Double.infinity
        if let t = downUntil { next = min(next, t) }
        if let t = actions.first?.at { next = min(next, t) }
        if let t = recheckAt { next = min(next, t) }
        if let t = network.values.map(\.deliverAt).min() { next = min(next, t) }
        if let d = driver, downUntil == nil {
            if let t = d.nextDue(now: now) { next = min(next, t) }
            if d.isDecoding { next = now }
            if d.fetchesInFlight > 0 { next = min(next, nextProgress) }
        }
        if let t = crashTimes.first, t > now { next = min(next, t) }
        if next == .infinity { next = now + 3600 }
        clock.t = max(now, next)
    }

    func fail(_ what: String) {
        if violation == nil { violation = Violation(seed: seed, at: clock.t - 1_800_000_000, what: what) }
    }

    // MARK: crashes

    /// One effect is carried out (or a write reaches the store); false while the process lives.
    func spend() -> Bool {
        if world?.dead == true { return true }
        guard let n = effectBudget else { return false }
        if n <= 0 {
            world?.dead = true
            effectBudget = nil
            return true
        }
        effectBudget = n - 1
        return false
    }

    func crash() {
        if Self.trace { print(String(format: "%9.3f", clock.t - 1_800_000_000), "CRASH") }
        // All memory goes; the store and the files stay as they were left.
        network = [:]
        driver = nil
        world = nil
        for k in disk.keys {
            let synced = Int(disk[k]?.partSynced ?? 0)
            if let n = disk[k]?.part.count, n > synced { disk[k]?.part.removeLast(n - synced) }
        }
        for k in jobs.keys { failures[k] = ((try? store.job(k)) ?? nil)?.attempts ?? 0 }
        // Files still settling are still in the spool.
        spoolWaiting += unsettled
        unsettled = []
        recheckAt = nil
        downUntil = clock.t + rng.unit() * 5
    }

    func startDaemon() {
        downUntil = nil
        buckets = [:]  // `rate_limit` holds per process: a new one starts with a full bucket
        store.reopened()
        let w = SimWorld(sim: self)
        world = w
        var logger = Logger(label: "sim") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        var jitter = SimRandom(seed: seed ^ UInt64(steps))
        driver = JobDriver(config: config, store: store, world: w, clock: clock, logger: logger, random: { jitter.unit() })
        driver.observer = { [unowned self] before, event, t in self.observe(before, event, t) }
        // The spool as the daemon finds it: what settled is taken, what is recent waits.
        let found = spoolWaiting
        spoolWaiting = []
        for request in SpoolRequest.allCases {
            for e in found where e.request == request { scanOrTake(e) }
        }
    }

    // MARK: the spool

    func spoolTurn() {
        let now = clock.t
        arrivals()
        if let t = recheckAt, t <= now {
            recheckAt = nil
            let pending = unsettled
            unsettled = []
            for request in SpoolRequest.allCases {
                for e in pending where e.request == request { scanOrTake(e) }
            }
        }
    }

    /// Files the operator drops: taken at once while the daemon runs (inotify), left in the spool while it is down.
    func arrivals() {
        while let a = actions.first, a.at <= clock.t {
            actions.removeFirst()
            guard case .drop(let request, let kind, let ids) = a.action else { continue }
            let e = SpoolEntry(request: request, kind: kind, ids: ids, droppedAt: a.at)
            if downUntil != nil { spoolWaiting.append(e) } else { take(e) }  // inotify: at once
        }
    }

    func scanOrTake(_ e: SpoolEntry) {
        if clock.t - e.droppedAt < SpoolIntake.settleTime {
            unsettled.append(e)
            recheckAt = min(recheckAt ?? .infinity, clock.t + SpoolIntake.settleTime)
        } else {
            take(e)
        }
    }

    func take(_ e: SpoolEntry) {
        if SpoolIntake.waits(e.request, kind: e.kind, settling: unsettled.map { ($0.request, $0.kind) }) {
            unsettled.append(e)
            recheckAt = min(recheckAt ?? .infinity, clock.t + SpoolIntake.settleTime)
            return
        }
        let keys = e.ids.map { JobKey(kind: e.kind, id: $0) }
        switch e.request {
        case .register:
            do { _ = try store.register(keys, now: clock.t) } catch { spoolWaiting.append(e) }  // the file stays
        case .cancel, .retry:
            for key in keys {
                // What the operator may expect, from the job as it is before the request.
                let saved = jobs[key]
                if let before = (try? store.job(key)) ?? nil, var job = jobs[key] {
                    if e.request == .cancel && !before.state.isTerminal && before.state != .publishing {
                        job.expected[before.retries] = .cancelled
                    }
                    if e.request == .retry && (before.state == .failed || before.state == .cancelled) { failures[key] = 0 }
                    jobs[key] = job
                }
                let problem = driver.apply(e.request, key)
                if world.dead {
                    // The process died before the file was removed: it is there at the next start.
                    // What the operator may expect stands only if the cancel reached the store.
                    let after = (try? store.job(key)) ?? nil
                    if !(e.request == .cancel && after?.outcome == .cancelled) { jobs[key] = saved }
                    spoolWaiting.append(e)
                    return
                }
                if Self.trace { print(String(format: "%9.3f", clock.t - 1_800_000_000), key, "operator \(e.request.rawValue) (dropped \(e.droppedAt - 1_800_000_000)):", problem ?? "applied") }
                if problem == "not registered", let dropped = jobs[key]?.registeredDrop, dropped <= e.droppedAt {
                    fail("\(e.request.rawValue) \(key), dropped after its job's registration, found no job")
                }
            }
        }
    }

    // MARK: the network

    func requestStarted(tag: Int, _ request: JobRequest, record: JobRecord, kind: KindConfig) {
        let key = request.key
        if request.credentials, let status = try? kind.statusURL(for: key.id), request.url.origin != status.origin {
            fail("credentials of \(kind.name) sent to \(request.url.origin)")
        }
        let polls = network.values.filter { $0.request.isPoll }.count + (request.isPoll ? 1 : 0)
        let fetches = network.values.filter { !$0.request.isPoll }.count + (request.isPoll ? 0 : 1)
        if polls > config.daemon.maxPolls { fail("\(polls) status requests in flight, max_polls is \(config.daemon.maxPolls)") }
        if fetches > config.daemon.maxDownloads { fail("\(fetches) downloads in flight, max_downloads is \(config.daemon.maxDownloads)") }
        if network.values.contains(where: { $0.request.key == key }) { fail("two requests in flight for \(key)") }
        if let limit = kind.rateLimit, request.purpose != .transfer {
            // An independent bucket: no more than `requests` at once, refilled at requests/per.
            var b = buckets[kind.name] ?? (max(1, limit.requests), clock.t)
            b.tokens = min(max(1, limit.requests), b.tokens + (clock.t - b.last) * limit.perSecond)
            b.last = clock.t
            if b.tokens < 1 - 1e-9 { fail("rate_limit of \(kind.name) exceeded (\(request.what) at \(clock.t))") }
            b.tokens -= 1
            buckets[kind.name] = b
        }
        var resume: Int64 = 0
        var version: Int?
        if request.purpose == .transfer, let d = disk[key], d.partSynced > 0 { resume = d.partSynced; version = d.partVersion }
        // A job still fetching whose artifact is named (a kill before its new state was committed) has its part whole.
        if request.purpose == .transfer, let a = disk[key]?.artifact, resume < a.bytes.count {
            fail("\(key) is fetched again from byte \(resume) though its artifact (\(a.bytes.count) bytes) is on disk")
        }
        let latency = faults.chance(0.05) ? 60 : 0.05 + faults.unit() * 2
        network[tag] = InFlight(request: request, kind: kind, at: clock.t, deliverAt: clock.t + latency, resumeFrom: resume, version: version)
    }

    func requestCancelled(tag: Int, checkpoint: Bool) -> Int64? {
        network[tag] = nil
        return nil
    }

    func transferProgress(tag: Int) -> (bytes: Int64, total: Int64?)? {
        guard let f = network[tag], f.request.purpose == .transfer else { return nil }
        return (f.resumeFrom, nil)
    }

    func deliver() {
        let now = clock.t
        let due = network.filter { $0.value.deliverAt <= now }.sorted { ($0.value.deliverAt, $0.key) < ($1.value.deliverAt, $1.key) }
        for (tag, f) in due {
            guard network.removeValue(forKey: tag) != nil, let d = driver, world?.dead == false else { continue }
            let response = answer(f)
            d.answered(tag, response)
            if world.dead { return }
            checkBackoff(f.request.key)
        }
    }

    static func response(_ status: Int, _ body: String = "", headers: [String: String] = [:]) -> HTTPResponse {
        HTTPResponse(status: status, headers: headers, body: Array(body.utf8), bytesWritten: Int64(body.utf8.count),
                     error: nil, writeError: nil, bodyTooLarge: false, seconds: 0.1)
    }

    static let timedOut = CurlError(code: 28, name: "Timeout was reached", detail: "simulated")

    func answer(_ f: InFlight) -> HTTPResponse {
        let key = f.request.key
        guard var job = jobs[key] else { return Self.response(404) }
        defer { jobs[key] = job }
        if f.deliverAt - f.at >= 60 {
            failures[key, default: 0] += 1
            var r = Self.response(0)
            r.error = Self.timedOut
            return r
        }
        switch f.request.purpose {
        case .poll: return pollAnswer(&job, f)
        case .page(let offset): return pageAnswer(&job, f, offset: offset)
        case .transfer: return transferAnswer(&job, f)
        }
    }

    /// 401 while the kind's token is refused: until it rotates, every request to the API fails.
    func unauthorized(_ f: InFlight) -> HTTPResponse? {
        guard let w = authBroken[f.kind.name], w.contains(clock.t) else { return nil }
        failures[f.request.key, default: 0] += 1
        return Self.response(401, #"{"message": "invalid token"}"#)
    }

    func pollAnswer(_ job: inout Job, _ f: InFlight) -> HTTPResponse {
        let key = f.request.key
        if let refused = unauthorized(f) { return refused }
        let base = try? f.kind.statusURL(for: key.id)
        if faults.chance(0.2) {
            failures[key, default: 0] += 1
            switch faults.int(0...5) {
            case 0: return Self.response(500, "oops")
            case 1: return Self.response(429, "{}", headers: ["retry-after": "\(faults.int(1...30))"])
            case 2: return Self.response(200, "<html>gateway</html>")
            case 3: return Self.response(503)
            case 4:
                failures[key, default: 0] -= 1
                if f.request.hop < 2, let base { return Self.response(302, headers: ["location": base.text + "?hop=\(f.request.hop + 1)"]) }
                return Self.response(500)
            default:
                failures[key] = 0
                return Self.response(200, #"{"status": "weird-\#(faults.int(0...3))", "job": {"status": "weird"}}"#)
            }
        }
        if job.script.notFound > 0 {
            job.script.notFound -= 1
            failures[key, default: 0] += 1
            return Self.response(404, #"{"message": "no such job"}"#)
        }
        failures[key] = 0
        let preset = f.kind.preset
        if job.answered < job.script.running {
            job.answered += 1
            return Self.response(200, Self.document(preset, state: .running, url: nil))
        }
        if job.script.fails {
            return Self.response(200, Self.document(preset, state: .failed, url: nil))
        }
        switch job.script.shape {
        case .url(let same):
            if faults.chance(0.1) { job.script.version += 1 }  // the object changes: a new ETag
            let expires = clock.t + (faults.chance(0.3) ? 5 : 3600)
            let host = same ? "https://api\(f.kind.name.dropFirst()).sim" : "https://files.sim"
            let url = "\(host)/r/\(key.id)?X-Amz-Date=\(Self.amzDate(clock.t))&X-Amz-Expires=\(Int(expires - clock.t))&X-Amz-Signature=s3cr3t"
            return Self.response(200, Self.document(preset, state: .succeeded, url: url))
        case .inline: return Self.response(200, #"{"status": "Success", "raw_result": "inline-\#(key.id)"}"#)
        case .pages, .none: return Self.response(200, Self.document(preset, state: .succeeded, url: nil))
        }
    }

    func pageAnswer(_ job: inout Job, _ f: InFlight, offset: Int) -> HTTPResponse {
        let key = f.request.key
        if let refused = unauthorized(f) { return refused }
        if faults.chance(0.15) {
            failures[key, default: 0] += 1
            return faults.chance(0.5) ? Self.response(502) : Self.response(200, #"{"nothing": []}"#)
        }
        failures[key] = 0
        guard case .pages(let total) = job.script.shape else { return Self.response(200, #"{"operations": [], "count": 0}"#) }
        let items = (offset..<min(total, offset + 100)).map { #"{"op": \#($0)}"# }
        return Self.response(200, #"{"operations": [\#(items.joined(separator: ", "))], "count": \#(total)}"#)
    }

    /// The artifact as the server holds it at `version`.
    static func content(_ key: JobKey, version: Int, size: Int) -> [UInt8] {
        var r = SimRandom(seed: UInt64(truncatingIfNeeded: key.description.hashValueStable) ^ UInt64(version))
        return (0..<size).map { _ in UInt8(truncatingIfNeeded: r.next()) }
    }

    func transferAnswer(_ job: inout Job, _ f: InFlight) -> HTTPResponse {
        let key = f.request.key
        if let expiry = PresignedURL.expiry(f.request.url.text), expiry <= clock.t {
            failures[key, default: 0] += 1
            return Self.response(403, "<Error>Request has expired</Error>")
        }
        if faults.chance(0.1) { failures[key, default: 0] += 1; return Self.response(503) }
        let version = job.script.version
        let body = Self.content(key, version: version, size: job.script.size)
        var d = disk[key] ?? SimDisk()
        var from = f.resumeFrom
        // If-Range: a resume of another version gets the whole object (the writer starts over).
        if from > 0 && (f.version != version || from > body.count) { from = 0 }
        if from == 0 { d.part = []; d.partVersions = [] }
        var r = Self.response(from > 0 ? 206 : 200)
        r.resumedFrom = from
        var end = body.count
        if faults.chance(0.15) && end - Int(from) > 1 {
            end = Int(from) + faults.int(0...(body.count - Int(from) - 1))
            if faults.chance(0.5) { r.error = CurlError(code: 18, name: "Transferred a partial file", detail: "simulated") } else {
                r.writeError = SystemError("write", ".artifact.part", errno: 28)
            }
            failures[key, default: 0] += 1
        } else {
            failures[key] = 0
        }
        d.part += body[Int(from)..<end]
        d.partVersions.insert(version)
        d.partVersion = version
        d.partSynced = Int64(d.part.count)
        r.bytesWritten = Int64(d.part.count)
        r.body = []
        disk[key] = d
        return r
    }

    enum DocState { case running, succeeded, failed }

    static func document(_ preset: String, state: DocState, url: String?) -> String {
        let u = url.map { "\"\($0)\"" } ?? "null"
        switch preset {
        case "dataset":
            switch state {
            case .running: return #"{"status": "processing", "progress": 0.5}"#
            case .succeeded: return #"{"status": "completed", "csv_url": \#(u)}"#
            case .failed: return #"{"status": "failed", "error": "the dataset broke"}"#
            }
        case "bulk-job":
            switch state {
            case .running: return #"{"status": "InProgress"}"#
            case .succeeded: return #"{"status": "Success", "url": \#(u)}"#
            case .failed: return #"{"status": "Failed", "error": "bulk failed"}"#
            }
        case "bulk-process":
            switch state {
            case .running: return #"{"status": "RUNNING"}"#
            case .succeeded: return #"{"status": "COMPLETED", "operationStatusCounts": {"done": 1}}"#
            case .failed: return #"{"status": "FAILED", "errorMessage": "process failed"}"#
            }
        case "export":
            switch state {
            case .running: return #"{"status": "In Progress", "progress": 40}"#
            case .succeeded: return #"{"status": "Successful", "results": {"successful": 3, "errors": 0}}"#
            case .failed: return #"{"status": "Failed", "error": "export failed"}"#
            }
        default:
            switch state {
            case .running: return #"{"job": {"status": "running"}}"#
            case .succeeded: return #"{"job": {"status": "success", "response": {"url": \#(u)}}}"#
            case .failed: return #"{"job": {"status": "failed", "error": "job failed"}}"#
            }
        }
    }

    static func amzDate(_ t: Double) -> String {
        // 2027-01-15T08:00:00.000Z -> 20270115T080000Z
        let ts = Timestamp.iso8601(t.rounded(.down)).filter { $0 != "-" && $0 != ":" }
        return String(ts.prefix(15)) + "Z"
    }

    static func digest(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return String(h, radix: 16)
    }

    // MARK: invariants

    /// Publishing: at most once per generation, with the scripted outcome, an uncorrupted artifact.
    func didPublish(_ r: JobRecord, disk d: SimDisk) {
        let key = r.key
        let outcome = r.outcome ?? .failed
        if published[key, default: []].contains(where: { $0.generation == r.retries }) {
            fail("\(key) published twice in generation \(r.retries)")
        }
        published[key, default: []].append(Publication(generation: r.retries, outcome: outcome, finishedAt: r.finishedAt))
        guard let job = jobs[key] else { return }
        if outcome == .failed, r.reason?.hasPrefix("timed out") == true, let kind = config.kind(key.kind) {
            // A timeout is no script's outcome, but it may come only once the job's time is up.
            let age = (r.finishedAt ?? clock.t) - r.clockStart
            if age <= kind.timeout { fail("\(key) timed out after \(Int(age)) s, its timeout is \(Int(kind.timeout)) s") }
            return
        }
        let expected = job.expected[r.retries] ?? (job.script.fails ? .failed : .succeeded)
        if outcome != expected { fail("\(key) published \(outcome.rawValue) in generation \(r.retries), the script says \(expected.rawValue) (reason: \(r.reason ?? "-"))") }
        guard outcome == .succeeded else { return }
        switch job.script.shape {
        case .url:
            guard let a = d.artifact else { fail("\(key) published without its artifact"); return }
            guard a.versions.count == 1, let v = a.versions.first, a.bytes == Self.content(key, version: v, size: job.script.size) else {
                fail("\(key) published a corrupt or spliced artifact (versions \(a.versions.sorted()), \(a.bytes.count) of \(job.script.size) bytes)")
                return
            }
        case .pages(let total):
            let expected = (0..<total).map { #"{"op":\#($0)}"# + "\n" }.joined()
            if d.pagesFile != Array(expected.utf8) { fail("\(key) published a paged result of \(d.pagesFile.count) bytes, expected \(expected.utf8.count)") }
        case .inline:
            if !d.staged.contains("result") { fail("\(key) published without its inline result") }
        case .none: break
        }
    }

    static let trace = getenv("SIM_TRACE") != nil

    func observe(_ before: JobRecord, _ event: JobEvent, _ t: Transition) {
        let after = t.record
        if Self.trace {
            let name = "\(event)".prefix(60)
            print(String(format: "%9.3f", clock.t - 1_800_000_000), before.key, "\(before.state.rawValue)→\(after.state.rawValue)", name,
                  t.effects.map { "\($0.effect)".prefix(40) }.joined(separator: " | "))
        }
        if before.state != after.state && !JobState.edges.contains(JobState.Edge(before.state, after.state)) {
            fail("\(before.key): \(before.state.rawValue) → \(after.state.rawValue) is no edge of the diagram")
        }
        for p in t.effects {
            if case .save(let r, _) = p.effect, !r.state.isTerminal, r.state != .publishing, let kind = config.kind(r.key.kind) {
                let wait = r.nextAt - clock.t
                let bound = max(kind.maxPollInterval * 1.1, 31, JobMachine.missingKindWait) + 1
                if wait > bound { fail("\(r.key) scheduled \(Int(wait))s ahead, more than any backoff allows (\(Int(bound))s)") }
            }
        }
    }

    /// After an answer: a job that failed N times in a row has backed off at least N times.
    func checkBackoff(_ key: JobKey) {
        guard let n = failures[key], n > 0, let r = (try? store.job(key)) ?? nil, !r.state.isTerminal, r.state != .publishing else { return }
        if r.attempts < n { fail("\(key) answered \(n) failures in a row, but its backoff counts \(r.attempts) (the delay stopped growing)") }
    }

    func checkInvariants() {
        // The schedule agrees with the rows, and every claim is a request in flight or a decode.
        let rows = (try? store.list()) ?? []
        let scheduled = store.scheduled
        for r in rows {
            if r.state.isTerminal {
                if scheduled[r.key] != nil { fail("\(r.key) is \(r.state.rawValue) but still scheduled") }
            } else if let s = scheduled[r.key] {
                if s.state != r.state || s.at != r.nextAt { fail("\(r.key): the schedule says \(s.state.rawValue) at \(s.at), the store \(r.state.rawValue) at \(r.nextAt)") }
            } else {
                fail("\(r.key) is \(r.state.rawValue) but in no schedule: it would never run again")
            }
        }
        let busy = Set(driver.inFlight.values.map(\.key)).union(driver.decodingKeys)
        if store.claimed != busy { fail("claims \(store.claimed.map(\.description).sorted()) but busy \(busy.map(\.description).sorted())") }
        for key in busy where network.values.contains(where: { $0.request.key == key }) == false && !driver.decodingKeys.contains(key) {
            fail("\(key) is claimed for a request the network never saw")
        }
    }
}

extension String {
    /// A hash that is the same in every process (Swift's `hashValue` is seeded).
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
