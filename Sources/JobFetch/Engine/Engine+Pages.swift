import Glibc
import Logging

/// A paged result (`{status_url}/operations?offset=N&limit=M`): each page's
/// items are appended to a JSON Lines file in the staging directory. After
/// every page the file is fsynced and its length recorded with the next
/// offset, so a crash resumes at a page boundary with nothing repeated.
extension Engine {
    func startPage(_ record: JobRecord, now: Double) {
        var r = record
        guard let kind = dueKind(&r, now: now, doing: "the paged result could not be fetched") else { return }
        guard let pages = kind.mapping.pages, var offset = r.pageNext else {
            r.pageNext = nil
            save(r)
            return
        }
        guard takeToken(&r, kind: kind, now: now) else { return }
        do {
            // Back to the last page boundary recorded as on disk.
            let staging = publisher.stagingDirectory(r.key)
            let file = staging + "/" + pages.file
            try FileIO.makeDirectories(staging)
            if offset > 0, (FileIO.size(file) ?? -1) < r.bytesDone {
                logger.warning("\(pages.file) is shorter than recorded; fetching its pages again from the start", metadata: Logger.job(r.key))
                offset = 0
                r.pageNext = 0
            }
            if offset == 0 { r.bytesDone = 0 }
            try FileIO.truncate(file, to: r.bytesDone)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot prepare \(pages.file): \(error)", response: nil, now: now, level: .error)
            return
        }
        let key = r.key
        startAPIRequest(&r, kind: kind, now: now, what: "page request at offset \(offset)", url: { () throws(JobFetchError) in
            let statusURL = try kind.statusURL(for: key.id)
            return try ParsedURL(pages.url(statusURL: statusURL.text, id: key.id, offset: offset), relativeTo: statusURL)
        }, purpose: { .page(key, url: $0, hop: 0) })
    }

    func handlePage(_ key: JobKey, url: ParsedURL, hop: Int, _ response: HTTPResponse) {
        let now = Clock.now()
        guard var r = try? store.job(key), r.state == .fetching, let offset = r.pageNext else { return }
        guard let kind = kindConfig(key, record: &r, now: now), let pages = kind.mapping.pages else { return }
        r.updatedAt = now
        r.lastHTTPStatus = response.status == 0 ? nil : response.status
        handleAPIAnswer(&r, kind: kind, url: url, hop: hop, response: response, what: "page endpoint (offset \(offset))", now: now,
                        again: { .page(key, url: $0, hop: $1) }) { r in
            appendPage(&r, kind: kind, pages: pages, offset: offset, url: url, response: response, now: now)
        }
    }

    private func appendPage(_ r: inout JobRecord, kind: KindConfig, pages: PageSpec, offset: Int, url: ParsedURL,
                            response: HTTPResponse, now: Double) {
        guard let doc = try? JSONParser.parse(response.body), case .array(let items)? = doc.value(at: pages.itemsField) else {
            scheduleRetry(&r, kind: kind, problem: "page at offset \(offset) from \(url.redacted) has no list at \(pages.itemsField) (HTTP \(response.status), body starts: \(response.bodySnippet))",
                          response: nil, now: now)
            return
        }
        let bytes = Array(items.map { JSONWriter.string($0) + "\n" }.joined().utf8)
        guard r.bytesDone + Int64(bytes.count) <= config.daemon.maxOutputSize else {
            r.reason = "\(pages.file) grew past max_output_size (\(Units.formatBytes(config.daemon.maxOutputSize)))"
            complete(&r, .failed, now: now)
            return
        }
        do {
            try FileIO.appendDurably(publisher.stagingDirectory(r.key) + "/" + pages.file, bytes)
        } catch {
            scheduleRetry(&r, kind: kind, problem: "cannot write \(pages.file): \(error)", response: nil, now: now, level: .error)
            return
        }
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
            logger.info("\(event)", metadata: Logger.job(r.key))
            if r.resultURL == nil {
                complete(&r, .succeeded, now: now)
            } else {
                r.nextAt = now
                save(r, event: event)
            }
        } else if next / max(pages.size, 1) >= PageSpec.maxPages {
            r.reason = "the API's paged list did not end after \(PageSpec.maxPages) pages"
            complete(&r, .failed, now: now)
        } else {
            r.pageNext = next
            r.nextAt = now
            save(r)
        }
    }
}
