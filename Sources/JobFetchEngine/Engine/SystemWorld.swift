import Glibc
import Logging
import JobFetchArtifacts
import JobFetchCore
import JobFetchTransfer

/// The daemon's world: the machine's effects carried out with libcurl and
/// files. Requests go to a `CurlMulti`; results are staged under
/// `<output>/.incoming/<kind>/<id>/` and published by the `Publisher`.
final class SystemWorld: JobWorld {
    static let partName = ".artifact.part"
    /// The part and what describes it (a partial download kept across attempts).
    static let partFiles: Set<String> = [partName, PartSidecar.path(for: partName), PartSidecar.progressPath(for: partName)]
    /// Where the decompressor writes, beside the part.
    static let inflatedName = ".artifact.out"
    /// What staging holds that is not the result: the download's files and `job.json`.
    static let notResult = partFiles.union([inflatedName, "job.json"])
    static let statusTimeout = 60.0

    let daemon: DaemonSettings
    let http: CurlMulti
    let publisher: Publisher
    let crashGuard: CrashGuard
    let logger: Logger
    let secrets = SecretFileCache()
    /// Parts are unlinked off the engine thread (see `Discarder`).
    let discarder: Discarder
    /// Decompressors following downloads in progress, by job.
    var decoders: [JobKey: PartInflater] = [:]
    /// Digests computed while downloading, by job: publishing need not read the artifact again.
    var knownDigests: [JobKey: [PublishedFile]] = [:]

    init(daemon: DaemonSettings, http: CurlMulti, publisher: Publisher, crashGuard: CrashGuard, discarder: Discarder, logger: Logger) {
        self.daemon = daemon
        self.discarder = discarder
        self.http = http
        self.publisher = publisher
        self.crashGuard = crashGuard
        self.logger = logger
    }

    func partPath(_ key: JobKey) -> String { publisher.stagingDirectory(key) + "/" + Self.partName }
    func inflatedPath(_ key: JobKey) -> String { publisher.stagingDirectory(key) + "/" + Self.inflatedName }

    func handling(_ key: JobKey, _ body: () -> Void) { crashGuard.handling(key, body) }

    // MARK: requests

    /// The kind's headers, resolved (secrets read) only for a request that carries them.
    func headers(_ kind: KindConfig, _ request: JobRequest) throws(JobFetchError) -> [String] {
        guard request.credentials else { return [] }
        var out: [String] = []
        for t in kind.headers { out.append(try t.resolve(secrets)) }
        return out
    }

    func start(_ request: JobRequest, record: JobRecord, kind: KindConfig) throws(JobFetchError) -> Int {
        let key = record.key
        let http: HTTPRequest
        switch request.purpose {
        case .poll, .page:
            let hdrs: [String]
            do { hdrs = try headers(kind, request) } catch { throw JobFetchError("cannot build the \(request.what): \(error.message)") }
            var r = HTTPRequest(url: request.url, headers: hdrs + ["Accept: application/json"],
                                body: .memory(limit: JobMachine.statusBodyLimit), timeout: Self.statusTimeout)
            r.acceptEncoding = true
            r.connectTimeout = daemon.connectTimeout
            logger.debug("\(request.what): \(request.url.redacted)", metadata: Logger.job(key))
            http = r
        case .transfer:
            do { http = try transferRequest(request, key: key, kind: kind) } catch {
                throw JobFetchError("cannot start the download: \(error)")
            }
        }
        do { return try self.http.start(http) } catch {
            if request.purpose == .transfer { dropDecoder(key) }
            throw JobFetchError("cannot start a request: \(error)")
        }
    }

    /// A download into the staging directory's `.part`, continuing what is
    /// there (`PartSidecar.resume`), with a decompressor following it.
    func transferRequest(_ request: JobRequest, key: JobKey, kind: KindConfig) throws -> HTTPRequest {
        let hdrs = try headers(kind, request)
        // The decompressor of an earlier hop goes first: it writes into the staging directory.
        dropDecoder(key)
        // The staging directory may already hold documents published with the
        // result; what an earlier attempt made of the artifact and a kill left
        // unpublished (its name, a zip's members) goes: this attempt makes it again.
        _ = try publisher.freshStaging(key, keeping: kind.mapping.documentNames.union(Self.partFiles))
        let part = partPath(key)
        // On the boot that wrote it, all of the part; after a reboot, what the
        // sidecar recorded as flushed; never more than the file holds.
        // A segmented part: each segment from what the progress file says (this boot) or its checkpoint.
        let resume = PartSidecar.load(part: part)?.resume(partSize: FileIO.size(part) ?? 0, boot: PartSidecar.currentBoot,
                                                          written: PartSidecar.loadProgress(part: part))
        if resume == nil { PartSidecar.discard(part: part, using: discarder) }
        // Decompression follows the download on a worker; after a resume it first
        // catches up over the bytes already on disk.
        let decoder = try PartInflater(part: part, output: inflatedPath(key),
                                       limit: daemon.maxOutputSize, maxRatio: daemon.maxCompressionRatio,
                                       reserved: kind.mapping.documentNames, job: key.description)
        decoders[key] = decoder
        if let resume { decoder.observe(.size(resume.segmentFrom?.first ?? resume.offset)) }
        let split = SplitRule(count: kind.segments ?? daemon.segments, minSize: daemon.segmentMinSize,
                              belowRate: Double(daemon.segmentBelowRate))
        var http = HTTPRequest(url: request.url, headers: hdrs, body: .file { [limit = daemon.maxArtifactSize, resume, logger] in
            Part(path: part, limit: limit, resume: resume, split: split,
                 observer: { [logger] event in
                     if case .split(let connections, let pieces, let rate) = event {
                         let measured = rate.map { ", its first connection at \(Units.formatBytes(Int64($0)))/s" } ?? ""
                         logger.info("splitting \(request.url.redacted): \(pieces) pieces over up to \(connections) connections\(measured)",
                                     metadata: Logger.job(key))
                     }
                     decoder.observe(event)
                 }, consumed: { decoder.consumed }, undecodable: { decoder.hasFailed }).firstWriter()
        }, timeout: nil)
        http.connectTimeout = daemon.connectTimeout
        http.lowSpeedLimit = Int(daemon.lowSpeedLimit)
        http.lowSpeedTime = daemon.lowSpeedTime
        let credentials = hdrs.isEmpty ? " (no credentials: another origin)" : ""
        if let resume, let from = resume.segmentFrom, let segments = resume.sidecar.segments {
            let left = zip(segments, from).filter { $0.end > $1 }.count
            let have = zip(segments, from).reduce(0) { $0 + $1.1 - $1.0.start }
            logger.info("resuming \(request.url.redacted): \(Units.formatBytes(have)) there, \(left) of \(segments.count) segments to fetch\(credentials)",
                        metadata: Logger.job(key))
        } else if let resume {
            logger.info("resuming \(request.url.redacted) from \(Units.formatBytes(resume.offset))\(credentials)", metadata: Logger.job(key))
        } else {
            logger.debug("downloading \(request.url.redacted)\(credentials)", metadata: Logger.job(key))
        }
        return http
    }

    @discardableResult
    func cancel(_ tag: Int, checkpoint: Bool) -> Int64? { http.cancel(tag, checkpoint: checkpoint) }

    func progress(_ tag: Int) -> (bytes: Int64, total: Int64?)? { http.progress(tag) }

    func facts(for record: JobRecord, kind: KindConfig?) -> DueFacts {
        var facts = DueFacts()
        switch record.state {
        case .publishing:
            if publisher.isPublished(record.key, finishedAt: record.finishedAt) { facts.alreadyPublished = publisher.finalDirectory(record.key) }
        case .fetching:
            if record.pageNext != nil, let file = kind?.mapping.pages?.file {
                facts.pagesFileSize = FileIO.size(publisher.stagingDirectory(record.key) + "/" + file)
            } else if record.pageNext == nil {
                facts.freeSpace = FileIO.freeSpace(daemon.outputDir)
            }
        default: break
        }
        return facts
    }

    // MARK: staging

    func stage(_ key: JobKey, documents: [PublishedDocument], inline: String?) throws(JobFetchError) {
        do {
            // A partial download of an earlier URL stays: a fresh URL to the same object resumes it.
            let dir = try publisher.freshStaging(key, keeping: Self.partFiles)
            for doc in documents {
                try FileIO.writeAtomically(dir + "/" + doc.name, Array((JSONWriter.string(doc.value, pretty: true) + "\n").utf8))
            }
            if let inline { try FileIO.writeAtomically(dir + "/result", Array(inline.utf8)) }
        } catch {
            throw JobFetchError("\(error)")
        }
    }

    func clearStaging(_ key: JobKey) {
        knownDigests[key] = nil
        do { _ = try publisher.freshStaging(key) } catch {
            logger.error("cannot clear the staging directory: \(error)", metadata: Logger.job(key))
        }
    }

    func removeStaging(_ key: JobKey) {
        do { try FileIO.removeTree(publisher.stagingDirectory(key)) } catch {
            logger.error("cannot clear the staging directory: \(error)", metadata: Logger.job(key))
        }
    }

    func truncatePages(_ key: JobKey, file: String, bytes: Int64) throws(JobFetchError) {
        do {
            let staging = publisher.stagingDirectory(key)
            try FileIO.makeDirectories(staging)
            try FileIO.truncate(staging + "/" + file, to: bytes)
        } catch { throw JobFetchError("\(error)") }
    }

    func appendPage(_ key: JobKey, file: String, bytes: [UInt8]) throws(JobFetchError) {
        do { try FileIO.appendDurably(publisher.stagingDirectory(key) + "/" + file, bytes) } catch { throw JobFetchError("\(error)") }
    }

    func discardPart(_ key: JobKey) { PartSidecar.discard(part: partPath(key), using: discarder) }

    // MARK: decompression

    func awaitDecode(_ key: JobKey, bytes: Int64) -> Bool {
        guard let decoder = decoders[key] else { return false }
        decoder.finish(size: bytes)
        return true
    }

    /// The descriptors that become readable when a decompressor drains.
    func decodeFDs(among keys: [JobKey]) -> [Int32] { keys.compactMap { decoders[$0]?.doneFD } }

    func finishedDecodes(among keys: Set<JobKey>) -> [(JobKey, DecodeOutcome)] {
        var done: [(JobKey, DecodeOutcome)] = []
        for key in keys {
            guard let outcome = decoders[key]?.outcome else { continue }
            // What the decompressor wrote goes unless it becomes the artifact.
            if case .inflated = outcome {} else if let d = decoders[key] { FileIO.unlinkIfPresent(d.output) }
            decoders[key] = nil
            done.append((key, outcome))
        }
        return done
    }

    func dropDecoder(_ key: JobKey) {
        guard let d = decoders.removeValue(forKey: key) else { return }
        d.cancel()
        FileIO.unlinkIfPresent(d.output)
    }

    /// Gives the artifact its name in the staging directory. The part stays
    /// until the job is published (`publish` discards it): this runs before
    /// the job's new state is committed, and a kill in between leaves the
    /// job fetching, which must find its part whole and fetch nothing again.
    func nameArtifact(_ key: JobKey, _ artifact: NamedArtifact) throws(JobFetchError) {
        let staging = publisher.stagingDirectory(key)
        let part = partPath(key)
        let inflated = inflatedPath(key)
        let named = staging + "/" + artifact.name
        switch artifact.source {
        case .inflated:
            guard rename(inflated, named) == 0 else { throw JobFetchError("\(SystemError("rename", inflated))") }
        case .extracted:
            FileIO.unlinkIfPresent(inflated)
        case .part:
            // A second name for the part's bytes, not a copy.
            FileIO.unlinkIfPresent(inflated)
            FileIO.unlinkIfPresent(named)
            if link(part, named) != 0 {
                // A filesystem without hard links (vfat, some FUSE and SMB mounts): the part
                // becomes the artifact, and a kill before the commit fetches it again.
                let why = errno
                guard [EPERM, ENOTSUP, EOPNOTSUPP, EMLINK, ENOSYS].contains(why) else {
                    throw JobFetchError("\(SystemError("link", part, errno: why))")
                }
                guard rename(part, named) == 0 else { throw JobFetchError("\(SystemError("rename", part))") }
                PartSidecar.discard(part: part)
            }
        }
        knownDigests[key] = artifact.files
    }

    // MARK: publishing

    func publish(_ r: JobRecord, kind: KindConfig?) -> PublishAnswer {
        #if DEBUG
        FaultStop.at("publishing", r.key)
        #endif
        let outcome = r.outcome ?? .failed
        let staging = publisher.stagingDirectory(r.key)
        do {
            var files: [PublishedFile] = []
            let documents = kind?.mapping.documentNames ?? ["result"]
            if outcome == .succeeded, FileIO.exists(staging) {
                let known = Dictionary((knownDigests.removeValue(forKey: r.key) ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
                for name in try FileIO.regularFiles(under: staging) where !Self.notResult.contains(name) {
                    let source = documents.contains(name) ? nil : r.resultURL.map(ParsedURL.redact)
                    if let known = known[name], FileIO.size(staging + "/" + name) == known.bytes {
                        // Hashed while it downloaded.
                        files.append(PublishedFile(name: name, bytes: known.bytes, sha256: known.sha256, source: source))
                        continue
                    }
                    let digest = try FileDigest.sha256(staging + "/" + name)
                    files.append(PublishedFile(name: name, bytes: digest.bytes, sha256: digest.hex, source: source))
                }
            }
            if outcome == .succeeded && r.resultURL != nil && !files.contains(where: { !documents.contains($0.name) }) {
                // The name is gone (a power cut took a link not yet durable): the part, kept, is fetched from.
                return .resultMissing
            }
            // The download is done with once its artifact has its name.
            PartSidecar.discard(part: partPath(r.key), using: discarder)
            FileIO.unlinkIfPresent(inflatedPath(r.key))
            let path = try publisher.publish(Publisher.Manifest(record: r, outcome: outcome, files: files, finishedAt: r.finishedAt ?? r.updatedAt))
            #if DEBUG
            FaultStop.at("published", r.key)
            #endif
            return .published(path: path)
        } catch {
            return .failed("\(error)")
        }
    }

    func shutdown() {
        for key in Array(decoders.keys) { dropDecoder(key) }
        // Parts being unlinked are let finish (else the next start sweeps them).
        discarder.waitUntilIdle(timeout: 5)
    }
}

/// A download's body goes to its `.part` through the transfer layer's sink,
/// one writer per connection.
extension PartWriter: BodySink {
    public var range: RangeRequest? { ask.map { RangeRequest(from: $0.from, through: $0.through, validator: $0.validator) } }
    /// The object's length as its first answer gave it (the resumed part's, before an answer of this attempt).
    public var expectedLength: Int64? {
        if let s = part.sidecar { return s.length }
        return part.resume?.sidecar.length
    }
    public var resumedBytes: Int64 { part.resumedBytes }
    public var isComplete: Bool { part.isComplete }
    public var isSegmented: Bool { part.isSegmented }
    public var stop: SinkStop? {
        switch ended {
        case .rangeDone: .rangeDone
        case .superseded: .superseded
        case nil: nil
        }
    }
    public var carriesStream: Bool { carriesWholeObject }
    public var undecodable: Bool { part.undecodable }
    public var aborted: Bool { part.aborted }
    public var namingHeaders: [String: String] { (part.sidecar ?? part.resume?.sidecar)?.namingHeaders ?? [:] }
    public func takeConnections() -> [any BodySink] { part.takeQueued() }
}
