import CCurl
import Glibc
import JobFetchCore

/// The libcurl multi interface: every request of the daemon on one thread,
/// no thread per request. `wait` sleeps in `curl_multi_poll` until a socket,
/// one of the caller's descriptors or the timeout wakes it.
public final class CurlMulti {
    private let multi: UnsafeMutableRawPointer
    private var transfers: [UnsafeMutableRawPointer: Transfer] = [:]
    /// A request's connections, by its tag: one, or a file request's segments.
    private final class Group {
        var running: [Transfer]
        var ended: [Transfer] = []
        var responses: [HTTPResponse] = []
        /// Why each ended connection stopped, as it was when it ended (a
        /// failed connection's piece may be another's by the time all end).
        var stops: [SinkStop?] = []
        let started = SystemClock.monotonic()
        init(_ first: Transfer) { running = [first] }
        /// A connection ended with `rc`: its answer and its stop, as they are now.
        func end(_ t: Transfer, _ rc: CURLcode) {
            running.removeAll { $0 === t }
            ended.append(t)
            responses.append(t.finish(rc))
            stops.append(t.sink?.stop)
        }
        var sinks: [any BodySink] { (running + ended).compactMap(\.sink) }
    }
    private var groups: [Int: Group] = [:]
    private var nextTag = 1

    private static let globalInit: Int32 = Int32(curl_global_init(Int(CURL_GLOBAL_ALL)).rawValue)

    public init(maxPerHost: Int = 8, maxTotal: Int = 64) throws(CurlError) {
        let rc = Self.globalInit
        guard rc == 0 else { throw CurlError(CURLcode(UInt32(rc)), detail: "curl_global_init") }
        guard let m = curl_multi_init() else { throw CurlError(CURLE_FAILED_INIT, detail: "curl_multi_init") }
        multi = m
        _ = jf_multi_setopt_long(m, CURLMOPT_MAX_HOST_CONNECTIONS, maxPerHost)
        _ = jf_multi_setopt_long(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxTotal)
    }

    deinit {
        for (easy, _) in transfers { curl_multi_remove_handle(multi, easy) }
        transfers.removeAll()
        groups.removeAll()
        curl_multi_cleanup(multi)
    }

    /// Connections in flight (a segmented download counts each of its segments).
    public var inFlight: Int { transfers.count }

    /// Starts a request; returns its tag, which `wait` hands back with the response.
    public func start(_ request: HTTPRequest) throws(CurlError) -> Int {
        let tag = nextTag
        nextTag += 1
        let t = try add(request, tag: tag, sink: nil)
        let group = Group(t)
        groups[tag] = group
        spawn(group)
        return tag
    }

    private func add(_ request: HTTPRequest, tag: Int, sink: (any BodySink)?) throws(CurlError) -> Transfer {
        guard let easy = curl_easy_init() else { throw CurlError(CURLE_FAILED_INIT, detail: "curl_easy_init") }
        let t = Transfer(easy: easy, request: request, tag: tag, sink: sink)
        try t.configure()
        let rc = curl_multi_add_handle(multi, easy)
        guard rc == CURLM_OK else {
            throw CurlError(CURLE_FAILED_INIT, detail: String(cString: curl_multi_strerror(rc)))
        }
        transfers[easy] = t
        return t
    }

    /// Drops the connections whose range another connection took over before
    /// they got an answer (each lets its place go to the next free range),
    /// and every connection of a download that failed (one still connecting,
    /// or stalled, would otherwise run until its own timeout), then starts
    /// the connections the group's sinks ask for.
    private func spawn(_ group: Group) {
        for t in group.running where t.sink?.stop == .superseded || t.sink?.aborted == true {
            curl_multi_remove_handle(multi, t.easy)
            transfers[t.easy] = nil
            group.end(t, CURLE_WRITE_ERROR)
        }
        // Ended connections too: one may have split the download and ended in the same turn.
        for t in group.running + group.ended {
            for sink in t.sink?.takeConnections() ?? [] {
                do { group.running.append(try add(t.request, tag: t.tag, sink: sink)) } catch {
                    // Not started: its segment is left to the stream, or to the next attempt.
                    sink.finish(durably: false)
                }
            }
        }
    }

    /// Stops a request in flight, every connection of it; nothing is reported for it.
    /// With `checkpoint`, a download's sink makes every byte that arrived
    /// durable and recorded (a shutdown: the next start re-sends nothing);
    /// returns the bytes it holds.
    @discardableResult
    public func cancel(_ tag: Int, checkpoint: Bool = false) -> Int64? {
        guard let group = groups.removeValue(forKey: tag) else { return nil }
        for t in group.running {
            curl_multi_remove_handle(multi, t.easy)
            transfers[t.easy] = nil
        }
        guard checkpoint, let sink = group.sinks.first else { return nil }
        for t in group.running { t.sink?.finish(durably: true) }
        return sink.size
    }

    /// A download's bytes on disk so far (every segment) and its expected length.
    public func progress(_ tag: Int) -> (bytes: Int64, total: Int64?)? {
        guard let sink = groups[tag]?.sinks.first else { return nil }
        return (sink.size, sink.expectedLength)
    }

    /// Drives the transfers and sleeps until something happens or `timeout`
    /// (seconds) passes; returns the requests that finished.
    public func wait(extraFDs: [Int32], timeout: Double) -> [(tag: Int, response: HTTPResponse)] {
        var running: Int32 = 0
        curl_multi_perform(multi, &running)
        var done = collect()
        if !done.isEmpty { return done }
        var fds = extraFDs.map { curl_waitfd(fd: $0, events: Int16(CURL_WAIT_POLLIN), revents: 0) }
        let ms = Int32(max(0, min(timeout, 3600)) * 1000)
        var numfds: Int32 = 0
        fds.withUnsafeMutableBufferPointer { buf in
            _ = curl_multi_poll(multi, buf.baseAddress, UInt32(buf.count), ms, &numfds)
        }
        curl_multi_perform(multi, &running)
        done = collect()
        return done
    }

    private func collect() -> [(tag: Int, response: HTTPResponse)] {
        var left: Int32 = 0
        while let msg = curl_multi_info_read(multi, &left) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let rc = msg.pointee.data.result
            curl_multi_remove_handle(multi, easy)
            guard let t = transfers.removeValue(forKey: easy), let group = groups[t.tag] else { continue }
            group.end(t, rc)
        }
        var done: [(Int, HTTPResponse)] = []
        for (tag, group) in groups {
            spawn(group)
            guard group.running.isEmpty else { continue }
            groups[tag] = nil
            var answer = Self.merge(group.responses, stops: group.stops, sinks: group.ended.map(\.sink))
            // The request's time is its connections' together, first start to last end.
            answer.seconds = SystemClock.monotonic() - group.started
            done.append((tag, answer))
        }
        return done
    }

    /// One answer for a request from its connections' answers. One stream
    /// (never split, or fallen back to by a whole answer on a range): the
    /// answer of the connection that carried it. Segments: success only when
    /// every byte of the object is in the file, else the first fault (a
    /// mismatch or a write error first, then a failed connection). Either
    /// way the byte counts are the sink's.
    static func merge(_ responses: [HTTPResponse], stops given: [SinkStop?]? = nil, sinks: [(any BodySink)?]) -> HTTPResponse {
        let stops = given ?? sinks.map { $0?.stop }
        guard let part = sinks.first ?? nil, !responses.isEmpty else {
            return responses.first ?? HTTPResponse(status: 0, headers: [:], body: [], error: CurlError(CURLE_FAILED_INIT, detail: "no connection was made"))
        }
        let incomplete = {
            var r = responses[0]
            r.error = CurlError(CURLE_PARTIAL_FILE, detail: "the connections ended with segments not whole")
            return r
        }
        var pick: HTTPResponse
        if !part.isSegmented {
            // The stream that carries the object now (a piece's clean 206 from before a takeover is not the download's answer).
            pick = zip(responses, sinks).first { $0.1?.carriesStream == true }?.0 ?? incomplete()
            if let length = part.expectedLength, pick.error == nil, pick.rangeMismatch == nil {
                if (200..<300).contains(pick.status), part.size != length {
                    // An answer that ended cleanly short of the object's length (a lying range or length): resumed, not published.
                    pick.error = CurlError(CURLE_PARTIAL_FILE, detail: "the answer ended at \(part.size) of \(length) bytes")
                } else if pick.status == 416, let total = ContentRange.parse(pick.headers["content-range"])?.total, total != length {
                    pick.rangeMismatch = "HTTP 416 says the object has \(total) bytes, its first answer \(length)"
                }
            }
        } else if part.isComplete && part.mismatch == nil && part.error == nil && !part.tooLarge {
            // The headers (name, type) of a connection that kept its range, a whole answer first.
            let kept = zip(responses, stops).filter { $0.1 != .superseded }.map(\.0)
            pick = kept.first { $0.status == 200 } ?? kept.first { (200..<300).contains($0.status) } ?? responses[0]
            pick.error = nil
            pick.writeError = nil
            pick.rangeMismatch = nil
        } else {
            var faults: [HTTPResponse] = []
            for ((r, s), stop) in zip(zip(responses, sinks), stops) where stop == nil {
                var r = r
                // A range past the end: the object is not the one that was split.
                if r.status == 416, let range = s?.range { r.rangeMismatch = "HTTP 416 for bytes \(range.text)" }
                faults.append(r)
            }
            pick = faults.first { $0.rangeMismatch != nil || $0.writeError != nil || $0.bodyTooLarge }
                ?? faults.first { $0.error != nil || !(200..<300).contains($0.status) }
                ?? incomplete()
        }
        if pick.status == 206 {
            // A resumed answer names the object as its first answer did, unless it says otherwise.
            for (name, value) in part.namingHeaders where pick.headers[name] == nil { pick.headers[name] = value }
        } else if pick.status == 416 {
            // A 416's headers describe its error page (`text/html`), not the object: the first answer's name it.
            for name in ["content-disposition", "content-type"] { pick.headers[name] = part.namingHeaders[name] }
        }
        // Whichever connection's answer speaks for the download, it stopped because the object cannot be decoded.
        if part.undecodable { pick.undecodable = true }
        pick.bytesWritten = part.size
        pick.resumedFrom = part.resumedBytes
        return pick
    }
}
