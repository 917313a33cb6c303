import Logging

/// Starting requests and reading their answers (SPEC "HTTP answers from a
/// status endpoint", "Downloads").
extension JobMachine {
    /// The largest status document or page read.
    package static let statusBodyLimit = 16 << 20
}

extension Step {
    static let maxRedirects = 5

    // MARK: starting

    mutating func startPoll() {
        guard let kind = dueKind(doing: "no result") else { return }
        let url: ParsedURL
        do { url = try kind.statusURL(for: r.key.id) } catch {
            retry("cannot build the status request: \(error.message)", level: .error)
            return
        }
        emit(.start(JobRequest(key: r.key, purpose: .poll, url: url, hop: 0, credentials: true, takesToken: true, what: "status request")))
    }

    mutating func startPage(_ facts: DueFacts) {
        guard let kind = dueKind(doing: "the paged result could not be fetched") else { return }
        guard let pages = kind.mapping.pages, var offset = r.pageNext else {
            r.pageNext = nil
            save()
            return
        }
        // Back to the last page boundary recorded as on disk.
        if offset > 0, (facts.pagesFileSize ?? -1) < r.bytesDone {
            log(.warning, "\(pages.file) is shorter than recorded; fetching its pages again from the start")
            offset = 0
            r.pageNext = 0
        }
        if offset == 0 { r.bytesDone = 0 }
        let what = "page request at offset \(offset)"
        let url: ParsedURL, statusOrigin: String
        do throws(JobFetchError) {
            let statusURL = try kind.statusURL(for: r.key.id)
            statusOrigin = statusURL.origin
            url = try ParsedURL(pages.url(statusURL: statusURL.text, id: r.key.id, offset: offset), relativeTo: statusURL)
        } catch {
            retry("cannot build the \(what): \(error.message)", level: .error)
            return
        }
        emit(.truncatePages(file: pages.file, bytes: r.bytesDone))
        emit(.start(JobRequest(key: r.key, purpose: .page(offset: offset), url: url, hop: 0, credentials: url.origin == statusOrigin,
                               takesToken: true, what: what)))
    }

    mutating func startFetch(_ facts: DueFacts) {
        guard let kind = dueKind(doing: "the result could not be fetched") else { return }
        guard let text = r.resultURL, let url = try? ParsedURL(text) else {
            r.state = .polling
            r.nextAt = now
            save("no usable result URL; polling again")
            return
        }
        if let free = facts.freeSpace, free < c.daemon.minFreeSpace {
            // New transfers wait for space; the job keeps its place and its part.
            r.nextAt = now + JobMachine.diskSpaceWait
            r.lastError = "waiting for disk space: \(Units.formatBytes(free)) free on the output filesystem, min_free_space is \(Units.formatBytes(c.daemon.minFreeSpace))"
            emit(.lowDiskSpace(r.lastError ?? ""))
            save()
            return
        }
        if let expiry = PresignedURL.expiry(url.text), expiry <= now {
            refreshResultURL(kind, url: url, why: "its expiry (\(Timestamp.iso8601(expiry))) has passed")
            return
        }
        startTransfer(kind, url: url, hop: 0)
    }

    mutating func startTransfer(_ kind: KindConfig, url: ParsedURL, hop: Int) {
        let statusOrigin: String
        do { statusOrigin = try kind.statusURL(for: r.key.id).origin } catch {
            retry("cannot start the download: \(error.message)", level: .error)
            return
        }
        emit(.start(JobRequest(key: r.key, purpose: .transfer, url: url, hop: hop, credentials: url.origin == statusOrigin,
                               takesToken: false, what: "download")))
    }

    // MARK: the kind's own API

    mutating func pollAnswered(url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        guard r.state == .registered || r.state == .polling, let kind = requireKind() else { return }
        r.updatedAt = now
        // A redirect is part of the same poll.
        if !(300..<400).contains(response.status) { r.polls += 1 }
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        emit(.count(.poll(kind: kind.name, status: response.error == nil ? response.status : 0)))
        apiAnswer(kind, url: url, hop: hop, response, what: "status endpoint", purpose: .poll) { s in
            s.readStatus(kind, url: url, response)
        }
    }

    mutating func pageAnswered(url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        guard r.state == .fetching, let offset = r.pageNext, let kind = requireKind(), let pages = kind.mapping.pages else { return }
        r.updatedAt = now
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        apiAnswer(kind, url: url, hop: hop, response, what: "page endpoint (offset \(offset))", purpose: .page(offset: offset)) { s in
            s.appendPage(kind, pages: pages, offset: offset, url: url, response)
        }
    }

    /// Acts on the API's answer: a 2xx goes to `ok`; a redirect is followed
    /// by hand (credentials stay on their origin); 404 is retried for
    /// `not_found_grace`; 401/403 are logged as errors and retried, never
    /// failing the job; 408/425/429/5xx and network errors back off; any
    /// other 4xx fails the job with the API's own message.
    mutating func apiAnswer(_ kind: KindConfig, url: ParsedURL, hop: Int, _ response: HTTPResponse, what: String,
                            purpose: JobRequest.Purpose, ok: (inout Step) -> Void) {
        if let error = response.error {
            retry(response.bodyTooLarge ? "the answer of the \(what) \(url.redacted) is larger than \(JobMachine.statusBodyLimit >> 20) MiB"
                : "request to the \(what) \(url.redacted) failed: \(error)", response: response)
            return
        }
        let status = response.status
        switch AnswerClass(status: status) {
        case .success:
            ok(&self)
        case .redirect:
            switch JobMachine.redirectTarget(response, from: url, hop: hop, kind: kind) {
            case .follow(let next):
                guard let statusOrigin = try? kind.statusURL(for: r.key.id).origin else {
                    retry("cannot build the \(what) request for \(next.redacted)", response: response, level: .error)
                    return
                }
                save()
                // A hop is one more request to the API: it takes a token too.
                emit(.start(JobRequest(key: r.key, purpose: purpose, url: next, hop: hop + 1, credentials: next.origin == statusOrigin,
                                       takesToken: true, what: what)))
            case .unusable(let why): retry(why, response: response)
            case .refused(let why):
                r.reason = "the \(what) could not be read: \(why)"
                finish(.failed)
            }
        case .notFound:
            let since = r.notFoundSince ?? now
            r.notFoundSince = since
            if now - since >= kind.notFoundGrace {
                r.reason = "not found: the \(what) answered 404 for \(r.key.id) for \(Units.formatDuration(now - since))"
                finish(.failed)
            } else {
                retry("\(what) answered 404 (may be new; retried for \(Units.formatDuration(kind.notFoundGrace)))", response: response, level: .info)
            }
        case .credentials:
            retry(JobMachine.credentialsProblem(url, status: status, kind: kind), response: response, level: .error)
        case .rateLimited:
            retry("\(what) answered HTTP 429: the API's rate limit or quota is exhausted", response: response)
        case .transient:
            retry("\(what) answered HTTP \(status)", response: response)
        case .refused:
            r.reason = "the API refused the request to the \(what) (HTTP \(status)): \(JobMachine.apiMessage(response))"
            finish(.failed)
        }
    }

    /// Applies a 2xx status document to the job.
    mutating func readStatus(_ kind: KindConfig, url: ParsedURL, _ response: HTTPResponse) {
        var reading = StatusReader.read(response.body, mapping: kind.mapping)
        if response.status == 202, case .malformed = reading.observation {
            // 202 Accepted with no readable status: the API is still at work.
            reading.observation = .running(progress: nil, paused: false)
        }
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
            keepPolling()
            r.progress = progress ?? r.progress
            schedulePoll(kind, notBefore: reading.notBefore)
            if changed != nil {
                log(paused ? .notice : .info, paused ? "paused by the API (status \(r.apiStatus ?? "?")); still polling" : "running (API status \(r.apiStatus ?? "?"))")
            }
            save(changed)
        case .unknown(let status):
            keepPolling()
            schedulePoll(kind, notBefore: reading.notBefore)
            emit(.warnUnknownStatus(kind: kind.name, status: status))
            save(changed.map { $0 + " (unknown to the mapping; still polling)" })
        case .malformed(let problem):
            retry("bad status document from \(url.redacted): \(problem) (HTTP \(response.status), body starts: \(response.bodySnippet))")
        case .failed(let reason):
            r.reason = reason
            finish(.failed)
        case .succeeded(let resultURL, let inline, let warnings):
            acceptResult(kind, statusURL: url, resultURL: resultURL, inline: inline, warnings: warnings, published: reading.published)
        }
    }

    /// Success: the documents to publish and any inline result go into a
    /// fresh staging directory; a paged list or a result URL is fetched next.
    mutating func acceptResult(_ kind: KindConfig, statusURL: ParsedURL, resultURL: String?, inline: JSONValue?,
                               warnings: [String], published: [PublishedDocument]) {
        var url: ParsedURL?
        if let resultURL {
            do throws(JobFetchError) {
                let u = try ParsedURL(resultURL, relativeTo: statusURL)
                if let problem = JobMachine.insecureProblem(u, kind: kind) { throw JobFetchError("result URL \(problem)") }
                url = u
            } catch {
                r.reason = "the API reported success but its result URL is unusable: \(error.message)"
                finish(.failed)
                return
            }
        }
        var text: String?
        if let inline, url == nil {
            if case .string(let s) = inline { text = s } else { text = JSONWriter.string(inline) }
        }
        emit(.stage(documents: published.map { PublishedDocument(name: $0.name, value: SignatureRedactor.redact($0.value)) }, inline: text))
        r.warnings = warnings
        for w in warnings { log(.warning, "API warning: \(w)") }
        r.progress = 1
        r.bytesDone = 0
        r.bytesTotal = nil
        r.resultURL = url?.text
        r.pageNext = kind.mapping.pages == nil ? nil : 0
        guard url != nil || r.pageNext != nil else {
            finish(.succeeded)
            return
        }
        startFetching([r.pageNext != nil ? "pages" : nil, url.map(\.redacted)].compactMap { $0 }.joined(separator: " and "))
    }

    mutating func appendPage(_ kind: KindConfig, pages: PageSpec, offset: Int, url: ParsedURL, _ response: HTTPResponse) {
        guard let doc = try? JSONParser.parse(response.body), case .array(let items)? = doc.value(at: pages.itemsField) else {
            retry("page at offset \(offset) from \(url.redacted) has no list at \(pages.itemsField) (HTTP \(response.status), body starts: \(response.bodySnippet))")
            return
        }
        let bytes = Array(items.map { JSONWriter.string($0) + "\n" }.joined().utf8)
        guard r.bytesDone + Int64(bytes.count) <= c.daemon.maxOutputSize else {
            r.reason = "\(pages.file) grew past max_output_size (\(Units.formatBytes(c.daemon.maxOutputSize)))"
            finish(.failed)
            return
        }
        emit(.appendPage(file: pages.file, bytes: bytes))
        r.bytesDone += Int64(bytes.count)
        r.attempts = 0
        r.lastError = nil
        r.notFoundSince = nil
        let next = offset + items.count
        // Exactly a whole number an Int holds, or no total at all (`1e400` is +inf, `2.5` is no count).
        let total = pages.totalField.flatMap { doc.value(at: $0)?.doubleValue }.flatMap { Int(exactly: $0) }
        if let total { r.bytesTotal = nil; r.progress = total > 0 ? Double(next) / Double(total) : 1 }
        let finished = items.isEmpty || (total.map { next >= $0 } ?? (items.count < pages.size))
        if finished {
            r.pageNext = nil
            let event = "fetched \(next) item(s) into \(pages.file)"
            log(.info, event)
            if r.resultURL == nil {
                finish(.succeeded)
            } else {
                r.nextAt = now
                save(event)
            }
        } else if next / max(pages.size, 1) >= PageSpec.maxPages {
            r.reason = "the API's paged list did not end after \(PageSpec.maxPages) pages"
            finish(.failed)
        } else {
            r.pageNext = next
            r.nextAt = now
            save()
        }
    }

    // MARK: downloads

    mutating func transferFinished(url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        guard r.state == .fetching, let kind = requireKind() else { return }
        r.updatedAt = now
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        r.bytesDone = response.bytesWritten
        emit(.count(.downloaded(kind: kind.name, bytes: response.bytesWritten - response.resumedFrom)))
        // A download stopped because its content cannot be decoded is the artifact's fault, not the transfer's.
        if (response.error != nil || response.writeError != nil) && !response.undecodable { emit(.count(.transferFailed(kind: kind.name))) }

        if let why = response.rangeMismatch { restartDownload(kind, url: url, why: why); return }
        if response.undecodable {
            // The decompressor failed on what arrived: the rest cannot mend it. Its reason fails the job.
            log(.warning, "stopped downloading \(url.redacted) at \(Units.formatBytes(response.bytesWritten)): what arrived cannot be decompressed")
            awaitDecode(url: url, response: response, bytes: response.bytesWritten)
            return
        }
        if let w = response.writeError {
            // The part stays: the job waits for space (or for the problem to be fixed) and resumes.
            retry(w.isNoSpace ? "disk full writing the result (\(w)); the job waits for space and resumes" : "cannot write the result: \(w)",
                  response: response, level: .error)
            return
        }
        if response.bodyTooLarge || response.error?.isFileSizeExceeded == true {
            r.reason = "the result at \(url.redacted) is larger than max_artifact_size (\(Units.formatBytes(c.daemon.maxArtifactSize)))"
            finish(.failed)
            return
        }
        if let error = response.error {
            retry("download from \(url.redacted) stopped at \(Units.formatBytes(response.bytesWritten)): \(error); it resumes from there", response: response)
            return
        }
        let statusOrigin = (try? kind.statusURL(for: r.key.id).origin) ?? url.origin
        let status = response.status
        if status == 416 {
            // nginx answers a range past the end with `Content-Range: bytes */size`.
            let total = ContentRange.parse(response.headers["content-range"])?.total
            if response.resumedFrom > 0, total == response.resumedFrom {
                awaitDecode(url: url, response: response, bytes: response.resumedFrom)
            } else if response.resumedFrom == 0 {
                // No range was asked for: starting over cannot help.
                retry("\(url.redacted) answered HTTP 416 to a request for the whole file", response: response)
            } else {
                restartDownload(kind, url: url, why: "HTTP 416 for bytes from \(response.resumedFrom) of \(total.map(String.init) ?? "an unknown length")")
            }
            return
        }
        if [400, 401, 403, 410].contains(status) && url.origin != statusOrigin {
            refreshResultURL(kind, url: url, why: "HTTP \(status) (expired?)")
            return
        }
        switch AnswerClass(status: status) {
        case .success:
            awaitDecode(url: url, response: response, bytes: response.bytesWritten)
        case .redirect:
            switch JobMachine.redirectTarget(response, from: url, hop: hop, kind: kind) {
            case .follow(let next):
                save()
                startTransfer(kind, url: next, hop: hop + 1)
            case .unusable(let why): retry(why, response: response)
            case .refused(let why):
                r.reason = "the result could not be fetched: \(why)"
                finish(.failed)
            }
        case .credentials:
            retry(JobMachine.credentialsProblem(url, status: status, kind: kind), response: response, level: .error)
        case .notFound:
            retry("result not ready at \(url.redacted) (HTTP 404)", response: response, level: .info)
        case .rateLimited:
            retry("\(url.redacted) answered HTTP 429: quota or rate limit exhausted", response: response)
        case .transient:
            retry("\(url.redacted) answered HTTP \(status)", response: response)
        case .refused:
            r.reason = "downloading \(url.redacted) failed with HTTP \(status): \(JobMachine.apiMessage(response))"
            finish(.failed)
        }
    }

    /// The partial download cannot be resumed: it goes, and the next
    /// transfer starts from byte 0. A refused resume is normal once; again
    /// and again, the server is broken (a 416 to every request): back off.
    mutating func restartDownload(_ kind: KindConfig, url: ParsedURL, why: String) {
        emit(.discardPart)
        r.bytesDone = 0
        r.attempts += 1
        r.nextAt = r.attempts <= 1 ? now : now + kind.backoff.retryDelay(after: r.attempts, jitter: c.jitter)
        log(.warning, "\(url.redacted) cannot be resumed: \(why); downloading it from the start")
        save(r.attempts <= 2 ? "resume refused (\(why)); downloading from the start" : nil)
    }

    /// The download is whole: its decompressor drains what is left, and `decodeFinished` takes it from there.
    mutating func awaitDecode(url: ParsedURL, response: HTTPResponse, bytes: Int64) {
        save()
        emit(.awaitDecode(url: url, response: response, bytes: bytes))
    }

    /// Names the artifact: the decompressed output when the content was
    /// compressed (`.gz` dropped from the name), else the part itself.
    mutating func decodeFinished(url: ParsedURL, response: HTTPResponse, bytes: Int64, _ outcome: DecodeOutcome) {
        guard r.state == .fetching else { return }
        var name = ArtifactName.choose(contentDisposition: response.headers["content-disposition"], url: url,
                                       contentType: response.headers["content-type"])
        r.bytesDone = bytes
        r.bytesTotal = bytes
        let reserved = c.kind?.mapping.documentNames ?? []
        switch outcome {
        case .failed(let why):
            r.reason = "the result from \(url.redacted) could not be decoded: \(why)"
            finish(.failed)
            return
        case .writeFailed(let why):
            // The part stays whole: decompression is tried again once the problem is fixed.
            r.attempts += 1
            r.lastError = "cannot write the decompressed result: \(why)"
            r.nextAt = now + (c.kind.map { $0.backoff.retryDelay(after: r.attempts, jitter: c.jitter) } ?? 30)
            log(.error, "\(r.lastError ?? ""); retrying")
            save(r.lastError)
            return
        case .inflated(let out, let sha256):
            for ext in [".gz", ".gzip", ".z", ".zz"] where name.lowercased().hasSuffix(ext) && name.count > ext.count {
                name.removeLast(ext.count)
                break
            }
            // What is left is made safe again: `job.json.gz` must not become the report's name.
            name = ArtifactName.avoiding(ArtifactName.sanitize(name), reserved: reserved)
            emit(.nameArtifact(NamedArtifact(source: .inflated, name: name, files: [PublishedFile(name: name, bytes: out, sha256: sha256, source: nil)])))
            log(.info, "decompressed \(Units.formatBytes(bytes)) to \(Units.formatBytes(out)) while downloading")
        case .extracted(let archive):
            guard !archive.files.isEmpty else {
                // Nothing to publish (an empty archive, or links only): a result
                // without files would be fetched again for ever.
                r.reason = "the zip archive \(name) from \(url.redacted) holds no file that could be extracted" +
                    (archive.warnings.isEmpty ? "" : " (" + archive.warnings.prefix(3).joined(separator: "; ") + ")")
                finish(.failed)
                return
            }
            emit(.nameArtifact(NamedArtifact(source: .extracted, name: name, files: archive.files)))
            log(.info, "extracted \(archive.files.count) file(s) from the zip archive \(name)")
            let warnings = ServerText.firstOf(archive.warnings, max: StatusReader.maxWarnings - 1) { "… and \($0) more link entries, not extracted" }
            for w in warnings { log(.warning, w) }
            r.warnings += warnings
        case .notCompressed(let size, let sha256):
            name = ArtifactName.avoiding(name, reserved: reserved)
            emit(.nameArtifact(NamedArtifact(source: .part, name: name, files: [PublishedFile(name: name, bytes: size, sha256: sha256, source: nil)])))
        }
        log(.info, "downloaded \(Units.formatBytes(bytes)) in \(Units.formatDuration(response.seconds))")
        finish(.succeeded)
    }
}

/// The rules an answer is read by (SPEC "HTTP answers").
extension JobMachine {

    /// What to do with a 3xx answer.
    enum Redirect {
        case follow(ParsedURL)
        /// No `Location`: may heal, retried with backoff.
        case unusable(String)
        /// A target that is never fetched (another scheme, a downgrade to
        /// plain http, not a URL) or a redirect loop: the job fails.
        case refused(String)
    }

    static func redirectTarget(_ response: HTTPResponse, from url: ParsedURL, hop: Int, kind: KindConfig) -> Redirect {
        let status = response.status
        guard hop < Step.maxRedirects else { return .refused("\(url.redacted) answered HTTP \(status): more than \(Step.maxRedirects) redirects in a row") }
        guard let location = response.headers["location"] else { return .unusable("\(url.redacted) answered HTTP \(status) with no Location") }
        let next: ParsedURL
        do { next = try ParsedURL(location, relativeTo: url) } catch {
            return .refused("\(url.redacted) redirected to a URL that is never fetched: \(error.message)")
        }
        if let problem = insecureProblem(next, kind: kind) { return .refused("\(url.redacted) redirected: \(problem)") }
        return .follow(next)
    }

    static func credentialsProblem(_ url: ParsedURL, status: Int, kind: KindConfig) -> String {
        "credentials rejected by \(url.origin) (HTTP \(status)) for kind \(kind.name): fix the token; the job stays registered"
    }

    /// Why `url` may not be fetched for `kind`, or nil. Plain http is for a
    /// kind with `allow_insecure_http`, or for loopback when the kind's own
    /// status endpoint is plain http on loopback (a local API): an https API
    /// cannot send the daemon to plain http, not even on this machine.
    public static func insecureProblem(_ url: ParsedURL, kind: KindConfig) -> String? {
        guard url.scheme != "https", !kind.allowInsecureHTTP else { return nil }
        if url.isLoopback && kind.statusURL.lowercased().hasPrefix("http://") { return nil }
        return url.isLoopback
            ? "\(url.redacted) is plain http while the status endpoint is https: a downgrade is refused; set allow_insecure_http = yes to allow it"
            : "\(url.redacted) is plain http on a non-loopback host; set allow_insecure_http = yes to allow it"
    }

    /// The API's own words from an error body: `message`, `error`, `detail`,
    /// with `syntaxErrors` details where present; else the body's start.
    public static func apiMessage(_ response: HTTPResponse) -> String {
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
        let syntax = doc["syntaxErrors"]
        if case .array(let errors)? = syntax?["invalidFields"] ?? syntax {
            for e in errors {
                let field = e["field"]?.scalarText ?? e["fieldName"]?.scalarText ?? e["name"]?.scalarText ?? "?"
                let msg = e["error"]?.scalarText ?? e["message"]?.scalarText ?? JSONWriter.string(e)
                parts.append("\(field): \(msg)")
            }
        }
        return parts.isEmpty ? response.bodySnippet : parts.joined(separator: "; ")
    }
}
