import CCurl
import Glibc
import Logging

/// Downloading a finished job's result into its staging directory, as a
/// `.part` with a sidecar that lets any interruption resume.
extension Engine {
    static let partName = ".artifact.part"
    /// Where the decompressor writes, beside the part.
    static let inflatedName = ".artifact.out"

    func partPath(_ key: JobKey) -> String { publisher.stagingDirectory(key) + "/" + Self.partName }

    func startFetch(_ record: JobRecord, now: Double) {
        var r = record
        guard let kind = dueKind(&r, now: now, doing: "the result could not be fetched") else { return }
        guard let text = r.resultURL, let url = try? ParsedURL(text) else {
            r.state = .polling
            r.nextAt = now
            save(r, event: "no usable result URL; polling again")
            return
        }
        if let free = FileIO.freeSpace(config.daemon.outputDir), free < config.daemon.minFreeSpace {
            // New transfers wait for space; the job keeps its place and its part.
            r.nextAt = now + 5
            r.lastError = "waiting for disk space: \(Units.formatBytes(free)) free on the output filesystem, min_free_space is \(Units.formatBytes(config.daemon.minFreeSpace))"
            if now >= lowSpaceNoticeAfter {
                logger.notice("\(r.lastError ?? ""); downloads wait", metadata: Logger.job(r.key))
                lowSpaceNoticeAfter = now + 300
            }
            save(r)
            return
        }
        if let expiry = PresignedURL.expiry(url.text), expiry <= now {
            refreshResultURL(&r, kind: kind, url: url, why: "its expiry (\(Timestamp.iso8601(expiry))) has passed", now: now)
            return
        }
        startFetch(r, kind: kind, url: url, hop: 0)
    }

    func startFetch(_ record: JobRecord, kind: KindConfig, url: ParsedURL, hop: Int) {
        var r = record
        let now = Clock.now()
        do {
            let statusOrigin = try kind.statusURL(for: r.key.id).origin
            let hdrs = try headers(for: kind, url: url, statusOrigin: statusOrigin)
            // The staging directory may already hold documents published with the result.
            try FileIO.makeDirectories(publisher.stagingDirectory(r.key))
            let part = partPath(r.key)
            var resume = PartSidecar.load(part: part)
            if var found = resume {
                // Only what the sidecar recorded as flushed, and no more than the file holds.
                found.synced = min(found.synced, FileIO.size(part) ?? 0)
                resume = found.isResumable ? found : nil
            }
            if resume == nil { PartSidecar.discard(part: part) }
            // Decompression follows the download on a worker; after a resume it first
            // catches up over the bytes already on disk.
            dropDecoder(r.key)
            let decoder = try PartInflater(part: part, output: publisher.stagingDirectory(r.key) + "/" + Self.inflatedName,
                                           limit: config.daemon.maxOutputSize, maxRatio: config.daemon.maxCompressionRatio,
                                           reserved: kind.mapping.documentNames, job: r.key.description)
            decoders[r.key] = decoder
            if let resume { decoder.observe(.size(resume.synced)) }
            var request = HTTPRequest(url: url, headers: hdrs, body: .file(path: part, limit: config.daemon.maxArtifactSize, resume: resume,
                                                                          observer: { decoder.observe($0) }), timeout: nil)
            request.connectTimeout = config.daemon.connectTimeout
            request.lowSpeedLimit = Int(config.daemon.lowSpeedLimit)
            request.lowSpeedTime = config.daemon.lowSpeedTime
            let credentials = hdrs.isEmpty ? " (no credentials: another origin)" : ""
            if let resume {
                logger.info("resuming \(url.redacted) from \(Units.formatBytes(resume.synced))\(credentials)", metadata: Logger.job(r.key))
            } else {
                logger.debug("downloading \(url.redacted)\(credentials)", metadata: Logger.job(r.key))
            }
            _ = begin(.fetch(r.key, url: url, hop: hop), request: request)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot start the download: \(error)", response: nil, now: now, level: .error)
        }
    }

    /// The result URL no longer works (a presigned URL expired): back to the
    /// status endpoint for a fresh one. The `.part` stays; the next download
    /// resumes it if the new URL serves the same object (`If-Range`).
    func refreshResultURL(_ r: inout JobRecord, kind: KindConfig, url: ParsedURL, why: String, now: Double) {
        r.state = .polling
        r.resultURL = nil
        r.attempts += 1
        r.lastError = "result URL \(url.redacted): \(why)"
        r.nextAt = now + kind.backoff.retryDelay(after: r.attempts)
        logger.warning("result URL \(url.redacted): \(why); polling the status endpoint for a fresh one", metadata: Logger.job(r.key))
        save(r, event: r.lastError)
    }

    func handleFetch(_ key: JobKey, url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        let now = Clock.now()
        guard var r = try? store.job(key), r.state == .fetching else { return }
        guard let kind = kindConfig(key, record: &r, now: now) else { return }
        r.updatedAt = now
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        r.bytesDone = response.bytesWritten
        let part = partPath(key)
        metrics.downloaded(kind.name, bytes: response.bytesWritten - response.resumedFrom)
        if response.error != nil || response.writeError != nil { metrics.transferFailed(kind.name) }

        func retry(_ problem: String, level: Logger.Level = .warning) {
            scheduleRetry(&r, kind: kind, problem: problem, response: response, now: now, level: level)
        }
        func restart(_ why: String) {
            PartSidecar.discard(part: part)
            r.bytesDone = 0
            // A refused resume is normal once; again and again, the server is
            // broken (a 416 to every request): back off like any other retry.
            r.attempts += 1
            r.nextAt = r.attempts <= 1 ? now : now + kind.backoff.retryDelay(after: r.attempts)
            logger.warning("\(url.redacted) cannot be resumed: \(why); downloading it from the start", metadata: Logger.job(key))
            save(r, event: r.attempts <= 2 ? "resume refused (\(why)); downloading from the start" : nil)
        }

        // Only a complete download keeps its decompressor (awaitDecode); any other end stops it.
        let decoder = decoders.removeValue(forKey: key)
        var keepDecoder = false
        defer {
            if !keepDecoder, let decoder {
                decoder.cancel()
                FileIO.unlinkIfPresent(decoder.output)
            }
        }
        if let why = response.rangeMismatch { restart(why); return }
        if let w = response.writeError {
            // The part stays: the job waits for space (or for the problem to be fixed) and resumes.
            retry(w.isNoSpace ? "disk full writing the result (\(w)); the job waits for space and resumes" : "cannot write the result: \(w)", level: .error)
            return
        }
        if response.bodyTooLarge || response.error?.code == Int32(CURLE_FILESIZE_EXCEEDED.rawValue) {
            r.reason = "the result at \(url.redacted) is larger than max_artifact_size (\(Units.formatBytes(config.daemon.maxArtifactSize)))"
            complete(&r, .failed, now: now)
            return
        }
        if let error = response.error {
            retry("download from \(url.redacted) stopped at \(Units.formatBytes(response.bytesWritten)): \(error); it resumes from there")
            return
        }
        let statusOrigin = (try? kind.statusURL(for: key.id).origin) ?? url.origin
        let status = response.status
        if status == 416 {
            // nginx answers a range past the end with `Content-Range: bytes */size`.
            let total = ContentRange.parse(response.headers["content-range"])?.total
            if response.resumedFrom > 0, total == response.resumedFrom {
                keepDecoder = true
                awaitDecode(&r, decoder, url: url, response: response, bytes: response.resumedFrom)
            } else if response.resumedFrom == 0 {
                // No range was asked for: starting over cannot help.
                retry("\(url.redacted) answered HTTP 416 to a request for the whole file")
            } else {
                restart("HTTP 416 for bytes from \(response.resumedFrom) of \(total.map(String.init) ?? "an unknown length")")
            }
            return
        }
        if [400, 401, 403, 410].contains(status) && url.origin != statusOrigin {
            refreshResultURL(&r, kind: kind, url: url, why: "HTTP \(status) (expired?)", now: now)
            return
        }
        switch AnswerClass(status: status) {
        case .success:
            keepDecoder = true
            awaitDecode(&r, decoder, url: url, response: response, bytes: response.bytesWritten)
        case .redirect:
            switch redirectTarget(response, from: url, hop: hop, kind: kind) {
            case .follow(let next):
                save(r)
                startFetch(r, kind: kind, url: next, hop: hop + 1)
            case .unusable(let why): retry(why)
            case .refused(let why):
                r.reason = "the result could not be fetched: \(why)"
                complete(&r, .failed, now: now)
            }
        case .credentials:
            retry(Self.credentialsProblem(url, status: status, kind: kind), level: .error)
        case .notFound:
            retry("result not ready at \(url.redacted) (HTTP 404)", level: .info)
        case .rateLimited:
            retry("\(url.redacted) answered HTTP 429: quota or rate limit exhausted")
        case .transient:
            retry("\(url.redacted) answered HTTP \(status)")
        case .refused:
            r.reason = "downloading \(url.redacted) failed with HTTP \(status): \(Self.apiMessage(response))"
            complete(&r, .failed, now: now)
        }
    }

    /// The download is whole: its decompressor drains what is left on its
    /// worker, and the engine goes on; `finishDecodes` takes it from there.
    func awaitDecode(_ r: inout JobRecord, _ decoder: PartInflater?, url: ParsedURL, response: HTTPResponse, bytes: Int64) {
        guard let decoder else {
            finishArtifact(&r, url: url, response: response, bytes: bytes, outcome: .failed("the decompressor was lost"), now: Clock.now())
            return
        }
        decoders[r.key] = decoder
        decoder.finish(size: bytes)
        awaitingDecode[r.key] = (url, response, bytes)
        store.claim(r.key)
        save(r)
    }

    /// Picks up the decompressors that have finished.
    func finishDecodes() {
        for (key, pending) in awaitingDecode {
            guard let outcome = decoders[key]?.outcome else { continue }
            awaitingDecode[key] = nil
            decoders[key] = nil
            store.unclaim(key)
            guard var r = try? store.job(key), r.state == .fetching else { continue }
            crashGuard.handling(key) {
                finishArtifact(&r, url: pending.url, response: pending.response, bytes: pending.bytes, outcome: outcome, now: Clock.now())
            }
        }
    }

    /// Stops a job's decompressor and drops its output.
    func dropDecoder(_ key: JobKey) {
        guard let d = decoders.removeValue(forKey: key) else { return }
        d.cancel()
        FileIO.unlinkIfPresent(d.output)
    }

    /// Names the artifact: the decompressed output when the content was
    /// compressed (`.gz` dropped from the name), else the part itself.
    func finishArtifact(_ r: inout JobRecord, url: ParsedURL, response: HTTPResponse, bytes: Int64, outcome: PartInflater.Outcome, now: Double) {
        let staging = publisher.stagingDirectory(r.key)
        let part = partPath(r.key)
        let inflated = staging + "/" + Self.inflatedName
        var name = ArtifactName.choose(contentDisposition: response.headers["content-disposition"], url: url,
                                       contentType: response.headers["content-type"])
        r.bytesDone = bytes
        r.bytesTotal = bytes
        let reserved = config.kind(r.key.kind)?.mapping.documentNames ?? []
        switch outcome {
        case .failed(let why):
            FileIO.unlinkIfPresent(inflated)
            r.reason = "the result from \(url.redacted) could not be decoded: \(why)"
            complete(&r, .failed, now: now)
            return
        case .writeFailed(let why):
            // The part stays whole: decompression is tried again once the problem is fixed.
            FileIO.unlinkIfPresent(inflated)
            let kind = config.kind(r.key.kind)
            r.attempts += 1
            r.lastError = "cannot write the decompressed result: \(why)"
            r.nextAt = now + (kind.map { $0.backoff.retryDelay(after: r.attempts) } ?? 30)
            logger.error("\(r.lastError ?? ""); retrying", metadata: Logger.job(r.key))
            save(r, event: r.lastError)
            return
        case .inflated(let out, let sha256):
            for ext in [".gz", ".gzip", ".z", ".zz"] where name.lowercased().hasSuffix(ext) && name.count > ext.count {
                name.removeLast(ext.count)
                break
            }
            name = ArtifactName.avoiding(name, reserved: reserved)
            guard rename(inflated, staging + "/" + name) == 0 else {
                r.reason = "cannot name the result: \(SystemError("rename", inflated))"
                complete(&r, .failed, now: now)
                return
            }
            PartSidecar.discard(part: part)
            knownDigests[r.key] = [PublishedFile(name: name, bytes: out, sha256: sha256, source: nil)]
            logger.info("decompressed \(Units.formatBytes(bytes)) to \(Units.formatBytes(out)) while downloading", metadata: Logger.job(r.key))
        case .extracted(let archive):
            FileIO.unlinkIfPresent(inflated)
            guard !archive.files.isEmpty else {
                // Nothing to publish (an empty archive, or links only): a result
                // without files would be fetched again for ever.
                r.reason = "the zip archive \(name) from \(url.redacted) holds no file that could be extracted" +
                    (archive.warnings.isEmpty ? "" : " (" + archive.warnings.prefix(3).joined(separator: "; ") + ")")
                complete(&r, .failed, now: now)
                return
            }
            PartSidecar.discard(part: part)
            knownDigests[r.key] = archive.files
            logger.info("extracted \(archive.files.count) file(s) from the zip archive \(name)", metadata: Logger.job(r.key))
            let warnings = ServerText.firstOf(archive.warnings, max: StatusReader.maxWarnings - 1) { "… and \($0) more link entries, not extracted" }
            for w in warnings { logger.warning("\(w)", metadata: Logger.job(r.key)) }
            r.warnings += warnings
        case .notCompressed(let size, let sha256):
            FileIO.unlinkIfPresent(inflated)
            name = ArtifactName.avoiding(name, reserved: reserved)
            guard rename(part, staging + "/" + name) == 0 else {
                r.reason = "cannot name the result: \(SystemError("rename", part))"
                complete(&r, .failed, now: now)
                return
            }
            FileIO.unlinkIfPresent(PartSidecar.path(for: part))
            knownDigests[r.key] = [PublishedFile(name: name, bytes: size, sha256: sha256, source: nil)]
        }
        logger.info("downloaded \(Units.formatBytes(bytes)) in \(Units.formatDuration(response.seconds))", metadata: Logger.job(r.key))
        complete(&r, .succeeded, now: now)
    }
}
