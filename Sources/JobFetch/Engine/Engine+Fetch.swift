import CCurl
import Glibc
import Logging

/// Downloading a finished job's result into its staging directory, as a
/// `.part` with a sidecar that lets any interruption resume.
extension Engine {
    static let partName = ".artifact.part"

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
            let request = HTTPRequest(url: url, headers: hdrs, body: .file(path: part, limit: config.daemon.maxArtifactSize, resume: resume), timeout: nil)
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
        r.nextAt = now + Backoff(base: kind.pollInterval, cap: kind.maxPollInterval).retryDelay(after: r.attempts)
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

        func retry(_ problem: String, level: Logger.Level = .warning) {
            scheduleRetry(&r, kind: kind, problem: problem, response: response, now: now, level: level)
        }
        func restart(_ why: String) {
            PartSidecar.discard(part: part)
            r.bytesDone = 0
            r.nextAt = now
            logger.warning("\(url.redacted) cannot be resumed: \(why); downloading it from the start", metadata: Logger.job(key))
            save(r, event: "resume refused (\(why)); downloading from the start")
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
                finishArtifact(&r, url: url, response: response, bytes: response.resumedFrom, now: now)
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
            finishArtifact(&r, url: url, response: response, bytes: response.bytesWritten, now: now)
        case .redirect:
            guard let next = redirectTarget(response, from: url, hop: hop, kind: kind) else {
                retry("\(url.redacted) answered HTTP \(status) with no usable redirect")
                return
            }
            save(r)
            startFetch(r, kind: kind, url: next, hop: hop + 1)
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

    /// Names the downloaded file and decompresses it if its content is gzip or zlib.
    func finishArtifact(_ r: inout JobRecord, url: ParsedURL, response: HTTPResponse, bytes: Int64, now: Double) {
        let staging = publisher.stagingDirectory(r.key)
        let part = partPath(r.key)
        var name = ArtifactName.choose(contentDisposition: response.headers["content-disposition"], url: url,
                                       contentType: response.headers["content-type"])
        r.bytesDone = bytes
        r.bytesTotal = bytes
        let reserved = config.kind(r.key.kind)?.mapping.documentNames ?? []
        do throws(JobFetchError) {
            if Inflater.sniff(part) != nil {
                for ext in [".gz", ".gzip", ".z", ".zz"] where name.lowercased().hasSuffix(ext) && name.count > ext.count {
                    name.removeLast(ext.count)
                    break
                }
                name = ArtifactName.avoiding(name, reserved: reserved)
                let out = try Inflater.inflate(part, to: staging + "/" + name, limit: config.daemon.maxOutputSize)
                logger.info("decompressed \(Units.formatBytes(bytes)) to \(Units.formatBytes(out))", metadata: Logger.job(r.key))
                PartSidecar.discard(part: part)
            } else {
                name = ArtifactName.avoiding(name, reserved: reserved)
                guard rename(part, staging + "/" + name) == 0 else {
                    throw JobFetchError(SystemError("rename", part).description)
                }
                FileIO.unlinkIfPresent(PartSidecar.path(for: part))
            }
        } catch {
            r.reason = "the result from \(url.redacted) could not be decoded: \(error.message)"
            complete(&r, .failed, now: now)
            return
        }
        logger.info("downloaded \(Units.formatBytes(bytes)) in \(Units.formatDuration(response.seconds))", metadata: Logger.job(r.key))
        complete(&r, .succeeded, now: now)
    }
}
