import Logging

/// Polling a job's status endpoint and acting on what it says.
extension Engine {
    func startPoll(_ record: JobRecord, now: Double) {
        var r = record
        guard let kind = kindConfig(r.key, record: &r, now: now) else { return }
        if failIfTimedOut(&r, kind: kind, now: now, doing: "no result") { return }
        if let limit = kind.rateLimit {
            var bucket = buckets[kind.name] ?? TokenBucket(limit, now: now)
            let wait = bucket.take(now: now)
            buckets[kind.name] = bucket
            if let wait {
                r.nextAt = now + wait
                save(r)
                return
            }
        }
        let url: ParsedURL
        let hdrs: [String]
        do {
            url = try kind.statusURL(for: r.key.id)
            hdrs = try headers(for: kind, url: url, statusOrigin: url.origin)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot build the status request: \(error.message)", response: nil, now: now, level: .error)
            return
        }
        var request = HTTPRequest(url: url, headers: hdrs + ["Accept: application/json"], body: .memory(limit: Self.statusBodyLimit), timeout: Self.statusTimeout)
        request.acceptEncoding = true
        logger.debug("polling \(url.redacted)", metadata: Logger.job(r.key))
        _ = begin(.poll(r.key, url: url, hop: 0), request: request)
    }

    func handlePoll(_ key: JobKey, url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        let now = Clock.now()
        guard var r = try? store.job(key), !r.state.isTerminal else { return }
        guard let kind = kindConfig(key, record: &r, now: now) else { return }
        r.updatedAt = now
        r.polls += 1
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        func retry(_ problem: String, level: Logger.Level = .warning) {
            scheduleRetry(&r, kind: kind, problem: problem, response: response, now: now, level: level)
        }

        if let error = response.error {
            retry(response.bodyTooLarge ? "status body larger than \(Self.statusBodyLimit >> 20) MiB from \(url.redacted)" : "status request to \(url.redacted) failed: \(error)")
            return
        }
        let status = response.status
        switch status {
        case 200..<300:
            readStatus(&r, kind: kind, url: url, response: response, now: now)
        case 301, 302, 303, 307, 308:
            guard hop < Self.maxRedirects, let location = response.headers["location"],
                  let next = try? ParsedURL(location, relativeTo: url), isAllowedScheme(next, kind: kind) else {
                retry("status endpoint \(url.redacted) answered HTTP \(status) with no usable redirect")
                return
            }
            let statusOrigin = (try? kind.statusURL(for: key.id).origin) ?? url.origin
            do {
                let hdrs = try headers(for: kind, url: next, statusOrigin: statusOrigin)
                var request = HTTPRequest(url: next, headers: hdrs + ["Accept: application/json"], body: .memory(limit: Self.statusBodyLimit), timeout: Self.statusTimeout)
                request.acceptEncoding = true
                r.polls -= 1  // the redirect is part of the same poll
                save(r)
                _ = begin(.poll(key, url: next, hop: hop + 1), request: request)
            } catch {
                retry(error.message, level: .error)
            }
        case 404:
            let since = r.notFoundSince ?? now
            r.notFoundSince = since
            if now - since >= kind.notFoundGrace {
                r.reason = "not found: the API answered 404 for \(key.id) for \(Units.formatDuration(now - since))"
                complete(&r, .failed, now: now)
            } else {
                retry("status endpoint answered 404 (may be new; retried for \(Units.formatDuration(kind.notFoundGrace)))", level: .info)
            }
        case 401, 403:
            retry("credentials rejected by \(url.origin) (HTTP \(status)) for kind \(kind.name): fix the token; the job stays registered", level: .error)
        case 408, 425, 429, 500..<600:
            retry("status endpoint answered HTTP \(status)")
        default:
            r.reason = "the API refused the status request (HTTP \(status)): \(Self.apiMessage(response))"
            complete(&r, .failed, now: now)
        }
    }

    /// Applies a 2xx status document to the job.
    func readStatus(_ r: inout JobRecord, kind: KindConfig, url: ParsedURL, response: HTTPResponse, now: Double) {
        let reading = StatusReader.read(response.body, mapping: kind.mapping)
        let log = Logger.job(r.key)
        let backoff = Backoff(base: kind.pollInterval, cap: kind.maxPollInterval)
        if reading.document != nil { r.lastStatus = String(validating: response.body, as: UTF8.self) }
        let previous = r.apiStatus
        r.apiStatus = reading.apiStatus ?? r.apiStatus
        // An answer the mapping understands ends a run of failures; a malformed one continues it.
        if case .malformed = reading.observation {} else { r.attempts = 0; r.notFoundSince = nil; r.lastError = nil }
        let changed = previous != r.apiStatus ? "status \(r.apiStatus ?? "?")" : nil

        switch reading.observation {
        case .running(let progress):
            r.state = .polling
            r.progress = progress ?? r.progress
            r.nextAt = now + backoff.pollDelay(after: r.polls)
            if changed != nil { logger.info("running (API status \(r.apiStatus ?? "?"))", metadata: log) }
            save(r, event: changed)
        case .unknown(let status):
            r.state = .polling
            r.nextAt = now + backoff.pollDelay(after: r.polls)
            if warnedUnknownStatus.insert(r.key).inserted {
                logger.warning("unknown API status \"\(status)\" for kind \(kind.name); still polling", metadata: log)
            }
            save(r, event: changed)
        case .malformed(let problem):
            scheduleRetry(&r, kind: kind, problem: "bad status document from \(url.redacted): \(problem) (HTTP \(response.status), body starts: \(response.bodySnippet))",
                          response: nil, now: now)
        case .failed(let reason):
            r.reason = reason
            complete(&r, .failed, now: now)
        case .succeeded(let resultURL, let inline, let warnings):
            r.warnings = warnings
            for w in warnings { logger.warning("API warning: \(LineLogHandler.singleLine(w))", metadata: log) }
            r.progress = 1
            if let resultURL {
                do throws(JobFetchError) {
                    let u = try ParsedURL(resultURL, relativeTo: url)
                    guard isAllowedScheme(u, kind: kind) else {
                        throw JobFetchError("result URL \(u.redacted) is plain http on a non-loopback host; set allow_insecure_http = yes to allow it")
                    }
                    r.resultURL = u.text
                    r.state = .fetching
                    r.attempts = 0
                    r.nextAt = now
                    logger.info("completed; fetching \(u.redacted)", metadata: log)
                    save(r, event: "completed; fetching \(u.redacted)")
                } catch {
                    r.reason = "the API reported success but its result URL is unusable: \(error.message)"
                    complete(&r, .failed, now: now)
                }
            } else if let inline {
                writeInlineResult(&r, inline, now: now)
            } else {
                logger.info("completed with no result URL; publishing the status document", metadata: log)
                complete(&r, .succeeded, now: now)
            }
        }
    }

    func writeInlineResult(_ r: inout JobRecord, _ inline: JSONValue, now: Double) {
        let text: String
        if case .string(let s) = inline { text = s } else { text = JSONWriter.string(inline) }
        do {
            let dir = try publisher.freshStaging(r.key)
            try FileIO.writeAtomically(dir + "/result", Array(text.utf8))
            complete(&r, .succeeded, now: now)
        } catch {
            r.attempts += 1
            r.lastError = "cannot write the inline result: \(error)"
            r.nextAt = now + 30
            logger.error("\(r.lastError ?? "")", metadata: Logger.job(r.key))
            save(r)
        }
    }

    /// The API's own words from an error body: `message`, `error`, `detail`,
    /// with `syntaxErrors` details where present; else the body's start.
    static func apiMessage(_ response: HTTPResponse) -> String {
        guard let doc = try? JSONParser.parse(response.body) else {
            return response.body.isEmpty ? "(empty body)" : response.bodySnippet
        }
        var parts: [String] = []
        for key in ["message", "error", "detail", "error_description"] {
            if let v = doc[key] {
                if let t = v.scalarText { parts.append(t) } else if case .object = v, let m = v["message"]?.scalarText { parts.append(m) }
                break
            }
        }
        if case .array(let errors)? = doc["syntaxErrors"]?["invalidFields"] ?? doc["syntaxErrors"] {
            for e in errors {
                let field = e["field"]?.scalarText ?? e["name"]?.scalarText ?? "?"
                let msg = e["error"]?.scalarText ?? e["message"]?.scalarText ?? JSONWriter.string(e)
                parts.append("\(field): \(msg)")
            }
        }
        return parts.isEmpty ? response.bodySnippet : parts.joined(separator: "; ")
    }
}
