import CCurl
import Glibc
import Logging

/// Downloading a finished job's result into its staging directory.
extension Engine {
    static let partName = ".artifact.part"

    func startFetch(_ record: JobRecord, now: Double) {
        var r = record
        guard let kind = dueKind(&r, now: now, doing: "the result could not be fetched") else { return }
        guard let text = r.resultURL, let url = try? ParsedURL(text) else {
            r.state = .polling
            r.nextAt = now
            save(r, event: "no usable result URL; polling again")
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
            let staging = publisher.stagingDirectory(r.key)
            try FileIO.makeDirectories(staging)
            let request = HTTPRequest(url: url, headers: hdrs, body: .file(path: staging + "/" + Self.partName, limit: config.daemon.maxArtifactSize), timeout: nil)
            logger.debug("downloading \(url.redacted)\(hdrs.isEmpty ? " (no credentials: another origin)" : "")", metadata: Logger.job(r.key))
            _ = begin(.fetch(r.key, url: url, hop: hop), request: request)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot start the download: \(error)", response: nil, now: now, level: .error)
        }
    }

    func handleFetch(_ key: JobKey, url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        let now = Clock.now()
        guard var r = try? store.job(key), r.state == .fetching else { return }
        guard let kind = kindConfig(key, record: &r, now: now) else { return }
        let log = Logger.job(key)
        r.updatedAt = now
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        r.bytesDone = response.bytesWritten

        func retry(_ problem: String, level: Logger.Level = .warning) {
            scheduleRetry(&r, kind: kind, problem: problem, response: response, now: now, level: level)
        }

        if let w = response.writeError {
            retry(w.isNoSpace ? "disk full writing the result (\(w)); the job waits for space" : "cannot write the result: \(w)", level: .error)
            return
        }
        if response.bodyTooLarge || response.error?.code == Int32(CURLE_FILESIZE_EXCEEDED.rawValue) {
            r.reason = "the result at \(url.redacted) is larger than max_artifact_size (\(Units.formatBytes(config.daemon.maxArtifactSize)))"
            complete(&r, .failed, now: now)
            return
        }
        if let error = response.error {
            retry("download from \(url.redacted) failed after \(Units.formatBytes(response.bytesWritten)): \(error)")
            return
        }
        let statusOrigin = (try? kind.statusURL(for: key.id).origin) ?? url.origin
        let status = response.status
        if [400, 401, 403, 410].contains(status) && url.origin != statusOrigin {
            // A presigned URL on another origin has expired: ask the API for a fresh one.
            r.state = .polling
            r.resultURL = nil
            r.attempts += 1
            r.lastError = "result URL answered HTTP \(status) (expired?)"
            r.nextAt = now + Backoff(base: kind.pollInterval, cap: kind.maxPollInterval).retryDelay(after: r.attempts)
            logger.warning("result URL \(url.redacted) answered HTTP \(status); polling the status endpoint for a fresh one", metadata: log)
            save(r, event: r.lastError)
            return
        }
        switch AnswerClass(status: status) {
        case .success:
            finishArtifact(&r, url: url, response: response, now: now)
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
    func finishArtifact(_ r: inout JobRecord, url: ParsedURL, response: HTTPResponse, now: Double) {
        let staging = publisher.stagingDirectory(r.key)
        let part = staging + "/" + Self.partName
        var name = ArtifactName.choose(contentDisposition: response.headers["content-disposition"], url: url,
                                       contentType: response.headers["content-type"])
        r.bytesTotal = response.bytesWritten
        let reserved = config.kind(r.key.kind)?.mapping.documentNames ?? []
        do throws(JobFetchError) {
            if Inflater.sniff(part) != nil {
                for ext in [".gz", ".gzip", ".z", ".zz"] where name.lowercased().hasSuffix(ext) && name.count > ext.count {
                    name.removeLast(ext.count)
                    break
                }
                name = ArtifactName.avoiding(name, reserved: reserved)
                let bytes = try Inflater.inflate(part, to: staging + "/" + name, limit: config.daemon.maxOutputSize)
                unlink(part)
                logger.info("decompressed \(Units.formatBytes(response.bytesWritten)) to \(Units.formatBytes(bytes))", metadata: Logger.job(r.key))
            } else {
                name = ArtifactName.avoiding(name, reserved: reserved)
                guard rename(part, staging + "/" + name) == 0 else {
                    throw JobFetchError(SystemError("rename", part).description)
                }
            }
        } catch {
            r.reason = "the result from \(url.redacted) could not be decoded: \(error.message)"
            complete(&r, .failed, now: now)
            return
        }
        logger.info("downloaded \(Units.formatBytes(response.bytesWritten)) in \(Units.formatDuration(response.seconds))", metadata: Logger.job(r.key))
        complete(&r, .succeeded, now: now)
    }
}
