import Logging

/// Polling a job's status endpoint and acting on what it says.
extension Engine {
    /// How many (kind, unknown status) pairs are remembered for warn-once: a
    /// server that sends a new status on every poll cannot grow the set.
    static let maxWarnedStatuses = 256

    func startPoll(_ record: JobRecord, now: Double) {
        var r = record
        guard let kind = dueKind(&r, now: now, doing: "no result") else { return }
        guard takeToken(&r, kind: kind, now: now) else { return }
        let key = r.key
        startAPIRequest(&r, kind: kind, now: now, what: "status request", isStatusURL: true, url: { () throws(JobFetchError) in try kind.statusURL(for: key.id) },
                        purpose: { .poll(key, url: $0, hop: 0) })
    }

    func handlePoll(_ key: JobKey, url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        let now = Clock.now()
        guard var r = try? store.job(key), r.state == .registered || r.state == .polling else { return }
        guard let kind = kindConfig(key, record: &r, now: now) else { return }
        r.updatedAt = now
        // A redirect is part of the same poll.
        if !(300..<400).contains(response.status) { r.polls += 1 }
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        metrics.poll(kind.name, status: response.error == nil ? response.status : 0)
        handleAPIAnswer(&r, kind: kind, url: url, hop: hop, response: response, what: "status endpoint", now: now,
                        again: { .poll(key, url: $0, hop: $1) }) { r in
            readStatus(&r, kind: kind, url: url, response: response, now: now)
        }
    }

    /// Applies a 2xx status document to the job.
    func readStatus(_ r: inout JobRecord, kind: KindConfig, url: ParsedURL, response: HTTPResponse, now: Double) {
        var reading = StatusReader.read(response.body, mapping: kind.mapping)
        if response.status == 202, case .malformed = reading.observation {
            // 202 Accepted with no readable status: the API is still at work.
            reading.observation = .running(progress: nil, paused: false)
        }
        let log = Logger.job(r.key)
        if reading.document != nil { r.lastStatus = String(validating: response.body, as: UTF8.self) }
        if let summary = reading.summary {
            r.summary = JSONWriter.string(.object([JSONMember(kind.mapping.summaryField?.tokens.last ?? "summary", summary)]))
        }
        let previous = r.apiStatus
        r.apiStatus = reading.apiStatus ?? r.apiStatus
        // An answer the mapping understands ends a run of failures; a malformed one continues it.
        if case .malformed = reading.observation {} else { r.attempts = 0; r.notFoundSince = nil; r.lastError = nil }
        let changed = previous != r.apiStatus ? "status \(r.apiStatus ?? "?")" : nil

        switch reading.observation {
        case .running(let progress, let paused):
            r.state = .polling
            r.progress = progress ?? r.progress
            schedulePoll(&r, kind: kind, notBefore: reading.notBefore, now: now)
            if changed != nil {
                if paused {
                    logger.notice("paused by the API (status \(r.apiStatus ?? "?")); still polling", metadata: log)
                } else {
                    logger.info("running (API status \(r.apiStatus ?? "?"))", metadata: log)
                }
            }
            save(r, event: changed)
        case .unknown(let status):
            r.state = .polling
            schedulePoll(&r, kind: kind, notBefore: reading.notBefore, now: now)
            let seen = kind.name + "\u{0}" + StatusMapping.normalize(status)
            if warnedUnknownStatus.count < Self.maxWarnedStatuses, warnedUnknownStatus.insert(seen).inserted {
                logger.warning("unknown API status \"\(status)\" for kind \(kind.name); still polling (further jobs with it are not reported)", metadata: log)
                if warnedUnknownStatus.count == Self.maxWarnedStatuses {
                    logger.warning("\(Self.maxWarnedStatuses) different unknown API statuses seen; new ones are no longer reported until a reload")
                }
            }
            save(r, event: changed.map { $0 + " (unknown to the mapping; still polling)" })
        case .malformed(let problem):
            scheduleRetry(&r, kind: kind, problem: "bad status document from \(url.redacted): \(problem) (HTTP \(response.status), body starts: \(response.bodySnippet))",
                          response: nil, now: now)
        case .failed(let reason):
            r.reason = reason
            complete(&r, .failed, now: now)
        case .succeeded(let resultURL, let inline, let warnings):
            acceptResult(&r, kind: kind, statusURL: url, resultURL: resultURL, inline: inline, warnings: warnings,
                         published: reading.published, now: now)
        }
    }

    /// The next poll: the backoff schedule, or when the API says the job
    /// should be done if that is later (never past the job's timeout).
    func schedulePoll(_ r: inout JobRecord, kind: KindConfig, notBefore: Double?, now: Double) {
        r.nextAt = now + kind.backoff.pollDelay(after: r.polls)
        if let t = notBefore, t > now {
            r.nextAt = min(max(t, now + kind.pollInterval), r.clockStart + kind.timeout + 1)
            logger.debug("the API expects completion at \(Timestamp.iso8601(t)); next poll then", metadata: Logger.job(r.key))
        }
    }

    /// Success: the documents to publish and any inline result go into a
    /// fresh staging directory; a paged list or a result URL is fetched next.
    func acceptResult(_ r: inout JobRecord, kind: KindConfig, statusURL: ParsedURL, resultURL: String?, inline: JSONValue?,
                      warnings: [String], published: [PublishedDocument], now: Double) {
        let log = Logger.job(r.key)
        var url: ParsedURL?
        if let resultURL {
            do throws(JobFetchError) {
                let u = try ParsedURL(resultURL, relativeTo: statusURL)
                if let problem = Self.insecureProblem(u, kind: kind) { throw JobFetchError("result URL \(problem)") }
                url = u
            } catch {
                r.reason = "the API reported success but its result URL is unusable: \(error.message)"
                complete(&r, .failed, now: now)
                return
            }
        }
        do {
            // A partial download of an earlier URL stays: a fresh URL to the same object resumes it.
            let dir = try publisher.freshStaging(r.key, keeping: [Self.partName, PartSidecar.path(for: Self.partName)])
            for doc in published {
                try FileIO.writeAtomically(dir + "/" + doc.name, Array((JSONWriter.string(SignatureRedactor.redact(doc.value), pretty: true) + "\n").utf8))
            }
            if let inline, url == nil {
                let text: String
                if case .string(let s) = inline { text = s } else { text = JSONWriter.string(inline) }
                try FileIO.writeAtomically(dir + "/result", Array(text.utf8))
            }
        } catch {
            // Nothing is lost: the job is polled again and the result rewritten.
            scheduleRetry(&r, kind: kind, problem: "cannot write the result into the staging directory: \(error)", response: nil, now: now, level: .error)
            return
        }
        r.warnings = warnings
        for w in warnings { logger.warning("API warning: \(w)", metadata: log) }
        r.progress = 1
        r.bytesDone = 0
        r.bytesTotal = nil
        r.resultURL = url?.text
        r.pageNext = kind.mapping.pages == nil ? nil : 0
        guard url != nil || r.pageNext != nil else {
            complete(&r, .succeeded, now: now)
            return
        }
        r.state = .fetching
        r.attempts = 0
        r.nextAt = now
        let what = [r.pageNext != nil ? "pages" : nil, url.map(\.redacted)].compactMap { $0 }.joined(separator: " and ")
        logger.info("completed; fetching \(what)", metadata: log)
        save(r, event: "completed; fetching \(what)")
    }
}
