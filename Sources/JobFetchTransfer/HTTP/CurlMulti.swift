import CCurl
import Glibc
import JobFetchCore

/// The libcurl multi interface: every request of the daemon on one thread,
/// no thread per request. `wait` sleeps in `curl_multi_poll` until a socket,
/// one of the caller's descriptors or the timeout wakes it.
public final class CurlMulti {
    private let multi: UnsafeMutableRawPointer
    private var transfers: [UnsafeMutableRawPointer: Transfer] = [:]
    private var byTag: [Int: Transfer] = [:]
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
        byTag.removeAll()
        curl_multi_cleanup(multi)
    }

    public var inFlight: Int { transfers.count }

    /// Starts a request; returns its tag, which `wait` hands back with the response.
    public func start(_ request: HTTPRequest) throws(CurlError) -> Int {
        guard let easy = curl_easy_init() else { throw CurlError(CURLE_FAILED_INIT, detail: "curl_easy_init") }
        let tag = nextTag
        nextTag += 1
        let t = Transfer(easy: easy, request: request, tag: tag)
        try t.configure()
        let rc = curl_multi_add_handle(multi, easy)
        guard rc == CURLM_OK else {
            throw CurlError(CURLE_FAILED_INIT, detail: String(cString: curl_multi_strerror(rc)))
        }
        transfers[easy] = t
        byTag[tag] = t
        return tag
    }

    /// Stops a request in flight; nothing is reported for it.
    /// With `checkpoint`, a download's sink makes every byte that arrived
    /// durable and recorded (a shutdown: the next start re-sends nothing);
    /// returns the bytes it holds.
    @discardableResult
    public func cancel(_ tag: Int, checkpoint: Bool = false) -> Int64? {
        guard let t = byTag.removeValue(forKey: tag) else { return nil }
        curl_multi_remove_handle(multi, t.easy)
        transfers[t.easy] = nil
        guard checkpoint, let sink = t.sink else { return nil }
        sink.finish(durably: true)
        return sink.size
    }

    /// A download's bytes on disk so far and its expected length.
    public func progress(_ tag: Int) -> (bytes: Int64, total: Int64?)? {
        guard let sink = byTag[tag]?.sink else { return nil }
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
        var done: [(Int, HTTPResponse)] = []
        var left: Int32 = 0
        while let msg = curl_multi_info_read(multi, &left) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let rc = msg.pointee.data.result
            curl_multi_remove_handle(multi, easy)
            guard let t = transfers.removeValue(forKey: easy) else { continue }
            byTag[t.tag] = nil
            done.append((t.tag, t.finish(rc)))
        }
        return done
    }
}
