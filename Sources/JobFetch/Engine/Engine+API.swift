import Logging

/// Requests to a kind's own API (status documents and result pages) and
/// what its HTTP answers mean (SPEC.md "HTTP answers from a status endpoint").
extension Engine {
    /// A JSON request to `url`, with the kind's credentials only when `url`
    /// is on the status endpoint's origin.
    /// `statusOrigin` may be given when the caller has it (a poll's URL is the status URL).
    func apiRequest(_ kind: KindConfig, key: JobKey, url: ParsedURL, statusOrigin known: String? = nil) throws(JobFetchError) -> HTTPRequest {
        let statusOrigin: String
        if let known { statusOrigin = known } else { statusOrigin = try kind.statusURL(for: key.id).origin }
        let hdrs = try headers(for: kind, url: url, statusOrigin: statusOrigin)
        var request = HTTPRequest(url: url, headers: hdrs + ["Accept: application/json"],
                                  body: .memory(limit: Self.statusBodyLimit), timeout: Self.statusTimeout)
        request.acceptEncoding = true
        request.connectTimeout = config.daemon.connectTimeout
        return request
    }

    /// Starts a request to the kind's own API for `r`; when it cannot be
    /// built (a bad URL, an unreadable secret), backs off and says why.
    /// `isStatusURL`: the target is the status URL itself, so its origin is the status origin.
    func startAPIRequest(_ r: inout JobRecord, kind: KindConfig, now: Double, what: String, isStatusURL: Bool = false,
                         url: () throws(JobFetchError) -> ParsedURL, purpose: (ParsedURL) -> Purpose) {
        do {
            let target = try url()
            let request = try apiRequest(kind, key: r.key, url: target, statusOrigin: isStatusURL ? target.origin : nil)
            logger.debug("\(what): \(target.redacted)", metadata: Logger.job(r.key))
            _ = begin(purpose(target), request: request)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot build the \(what): \(error.message)", response: nil, now: now, level: .error)
        }
    }

    /// Acts on the API's answer to a request for `what`: a 2xx goes to
    /// `ok`; a redirect is followed by hand (credentials stay on their
    /// origin); 404 is retried for `not_found_grace`; 401/403 are logged as
    /// errors and retried, never failing the job; 408/425/429/5xx and
    /// network errors back off; any other 4xx fails the job with the
    /// API's own message.
    func handleAPIAnswer(_ r: inout JobRecord, kind: KindConfig, url: ParsedURL, hop: Int, response: HTTPResponse,
                         what: String, now: Double, again: (ParsedURL, Int) -> Purpose, ok: (inout JobRecord) -> Void) {
        func retry(_ problem: String, level: Logger.Level = .warning) {
            scheduleRetry(&r, kind: kind, problem: problem, response: response, now: now, level: level)
        }
        if let error = response.error {
            retry(response.bodyTooLarge ? "the answer of the \(what) \(url.redacted) is larger than \(Self.statusBodyLimit >> 20) MiB" : "request to the \(what) \(url.redacted) failed: \(error)")
            return
        }
        let status = response.status
        switch AnswerClass(status: status) {
        case .success:
            ok(&r)
        case .redirect:
            let next: ParsedURL
            switch redirectTarget(response, from: url, hop: hop, kind: kind) {
            case .follow(let target): next = target
            case .unusable(let why): retry(why); return
            case .refused(let why):
                r.reason = "the \(what) could not be read: \(why)"
                complete(&r, .failed, now: now)
                return
            }
            do {
                let request = try apiRequest(kind, key: r.key, url: next)
                save(r)
                _ = begin(again(next, hop + 1), request: request)
            } catch {
                retry(error.message, level: .error)
            }
        case .notFound:
            let since = r.notFoundSince ?? now
            r.notFoundSince = since
            if now - since >= kind.notFoundGrace {
                r.reason = "not found: the \(what) answered 404 for \(r.key.id) for \(Units.formatDuration(now - since))"
                complete(&r, .failed, now: now)
            } else {
                retry("\(what) answered 404 (may be new; retried for \(Units.formatDuration(kind.notFoundGrace)))", level: .info)
            }
        case .credentials:
            retry(Self.credentialsProblem(url, status: status, kind: kind), level: .error)
        case .rateLimited:
            retry("\(what) answered HTTP 429: the API's rate limit or quota is exhausted")
        case .transient:
            retry("\(what) answered HTTP \(status)")
        case .refused:
            r.reason = "the API refused the request to the \(what) (HTTP \(status)): \(Self.apiMessage(response))"
            complete(&r, .failed, now: now)
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
