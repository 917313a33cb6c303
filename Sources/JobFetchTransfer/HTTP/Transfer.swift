import CCurl
import Glibc
import JobFetchCore

/// One request in flight: the easy handle and everything libcurl's callbacks
/// write into. Owned by the thread that runs the `CurlMulti` (not Sendable).
final class Transfer {
    let easy: UnsafeMutableRawPointer
    let request: HTTPRequest
    let tag: Int
    let started = SystemClock.monotonic()
    var headerList: UnsafeMutablePointer<curl_slist>?
    var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

    var headers: [String: String] = [:]
    var body: [UInt8] = []
    var bodyLimit: Int
    var bodyTooLarge = false
    /// For file requests: where a 2xx body goes.
    let sink: (any BodySink)?
    /// Decided at the first body byte: does this body go to the file?
    var toFile: Bool?

    /// `sink`: another connection of a file request (a segment); nil: the request's own.
    init(easy: UnsafeMutableRawPointer, request: HTTPRequest, tag: Int, sink: (any BodySink)? = nil) {
        self.easy = easy
        self.request = request
        self.tag = tag
        switch request.body {
        case .memory(let limit):
            bodyLimit = limit
            self.sink = nil
        case .file(let makeSink):
            bodyLimit = 64 * 1024
            self.sink = sink ?? makeSink()
        }
    }

    deinit {
        if let headerList { curl_slist_free_all(headerList) }
        curl_easy_cleanup(easy)
    }

    func configure() throws(CurlError) {
        let h = easy
        func set(_ o: CURLoption, _ v: Int, _ n: String) throws(CurlError) {
            try CurlError.check(jf_easy_setopt_long(h, o, v), n)
        }
        func set(_ o: CURLoption, _ v: String, _ n: String) throws(CurlError) {
            try CurlError.check(jf_easy_setopt_string(h, o, v), n)
        }
        // Credentials were chosen for the origin the core read; libcurl must read the same one.
        try CurlURL.checkAgreement(request.url)
        try set(CURLOPT_URL, request.url.text, "URL")
        try set(CURLOPT_PROTOCOLS_STR, "http,https", "PROTOCOLS_STR")
        // Redirects are followed by the engine, which decides what credentials the next origin gets.
        try set(CURLOPT_FOLLOWLOCATION, 0, "FOLLOWLOCATION")
        try set(CURLOPT_NOSIGNAL, 1, "NOSIGNAL")
        try set(CURLOPT_TCP_KEEPALIVE, 1, "TCP_KEEPALIVE")
        try set(CURLOPT_USERAGENT, "jobfetchd/\(Version.string)", "USERAGENT")
        try set(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000), "CONNECTTIMEOUT_MS")
        if let t = request.timeout { try set(CURLOPT_TIMEOUT_MS, Int(t * 1000), "TIMEOUT_MS") }
        try set(CURLOPT_LOW_SPEED_LIMIT, max(1, request.lowSpeedLimit), "LOW_SPEED_LIMIT")
        try set(CURLOPT_LOW_SPEED_TIME, max(1, Int(request.lowSpeedTime)), "LOW_SPEED_TIME")
        if request.acceptEncoding { try set(CURLOPT_ACCEPT_ENCODING, "", "ACCEPT_ENCODING") }
        try CurlError.check(jf_easy_setopt_ptr(h, CURLOPT_ERRORBUFFER, &errorBuffer), "ERRORBUFFER")

        if var body = request.post {
            // libcurl copies the body (COPYPOSTFIELDS, after its size); no "Expect: 100-continue" round trip.
            try CurlError.check(jf_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, body.count), "POSTFIELDSIZE_LARGE")
            try CurlError.check(body.withUnsafeMutableBytes { jf_easy_setopt_ptr(h, CURLOPT_COPYPOSTFIELDS, $0.baseAddress) }, "COPYPOSTFIELDS")
        }
        var lines = request.headers + (request.post != nil ? ["Expect:"] : [])
        if let range = sink?.range {
            // This part of the same object, or (If-Range) all of it if it changed.
            // libcurl sends no Accept-Encoding here: a ranged body is never encoded.
            try set(CURLOPT_RANGE, range.text, "RANGE")
            lines.append("If-Range: \(range.validator)")
        }
        for line in lines {
            guard let next = curl_slist_append(headerList, line) else { throw CurlError(CURLE_OUT_OF_MEMORY) }
            headerList = next
        }
        // libcurl keeps the pointer, not a copy: the list lives as long as this Transfer.
        try CurlError.check(jf_easy_setopt_slist(h, CURLOPT_HTTPHEADER, headerList), "HTTPHEADER")

        let me = Unmanaged.passUnretained(self).toOpaque()
        try CurlError.check(jf_easy_setopt_datacb(h, CURLOPT_WRITEFUNCTION, transferWriteCallback), "WRITEFUNCTION")
        try CurlError.check(jf_easy_setopt_ptr(h, CURLOPT_WRITEDATA, me), "WRITEDATA")
        try CurlError.check(jf_easy_setopt_datacb(h, CURLOPT_HEADERFUNCTION, transferHeaderCallback), "HEADERFUNCTION")
        try CurlError.check(jf_easy_setopt_ptr(h, CURLOPT_HEADERDATA, me), "HEADERDATA")

        if let sink {
            // Large reads keep a fast transfer at libcurl's own speed.
            try set(CURLOPT_BUFFERSIZE, 256 * 1024, "BUFFERSIZE")
            try CurlError.check(jf_easy_setopt_off(h, CURLOPT_MAXFILESIZE_LARGE, Int(sink.limit)), "MAXFILESIZE_LARGE")
        }
    }

    func responseCode() -> Int {
        var code = 0
        _ = jf_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    /// Body bytes from libcurl: to the file for a 2xx answer to a file
    /// request, else to memory up to the limit. Returning less than `count`
    /// makes libcurl stop with CURLE_WRITE_ERROR.
    func receive(_ data: UnsafeRawBufferPointer) -> Int {
        if toFile == nil {
            let code = responseCode()
            if let sink, (200..<300).contains(code) {
                guard sink.begin(status: code, headers: headers, url: request.url) else { return 0 }
                toFile = true
            } else {
                toFile = false
            }
        }
        if toFile == true, let sink {
            return sink.write(data) ? data.count : 0
        }
        if body.count + data.count > bodyLimit {
            if sink != nil { return data.count }  // an error page: its start is enough
            bodyTooLarge = true
            return 0
        }
        body.append(contentsOf: data)
        return data.count
    }

    func receiveHeader(_ line: UnsafeRawBufferPointer) {
        var text = String(decoding: line, as: UTF8.self)
        while let l = text.last, l == "\n" || l == "\r" || l == "\r\n" { text.removeLast() }
        if text.hasPrefix("HTTP/") { headers = [:]; return }  // a new response (after 100, or a redirect)
        guard let colon = text.firstIndex(of: ":") else { return }
        let name = text[..<colon].lowercased()
        headers[name] = text[text.index(after: colon)...].trimmingWhitespace()
    }

    /// Ends the sink (what arrived stays for a resume) and builds the response.
    func finish(_ rc: CURLcode) -> HTTPResponse {
        sink?.finish(durably: false)
        var error: CurlError?
        // A sink that stopped its connection on purpose (its range is whole,
        // or another connection took over) made libcurl report a write error.
        if rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && sink?.stop != nil) {
            var detail = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            if rc == CURLE_OUT_OF_MEMORY && toFile == nil && detail.isEmpty {
                // libcurl before 8.6 reports a header line over its limit so (later ones: CURLE_TOO_LARGE, with a message).
                detail = "probably the answer's headers are more than libcurl accepts (one line over 100 KB, or 300 KB in all)"
            }
            error = CurlError(rc, detail: detail)
        }
        // (`undecodable` is the download's, set on the request's answer by `CurlMulti.merge`.)
        return HTTPResponse(status: responseCode(), headers: headers, body: body, bytesWritten: sink?.size ?? 0,
                            resumedFrom: sink?.resumedBytes ?? 0, rangeMismatch: sink?.mismatch, error: error,
                            writeError: sink?.error, bodyTooLarge: bodyTooLarge || sink?.tooLarge == true,
                            seconds: SystemClock.monotonic() - started)
    }
}

// C callbacks: they capture nothing and find their Transfer through the user pointer.

func transferWriteCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer) -> Int {
    let t = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
    return t.receive(UnsafeRawBufferPointer(start: ptr, count: size * count))
}

func transferHeaderCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer) -> Int {
    let t = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
    t.receiveHeader(UnsafeRawBufferPointer(start: ptr, count: size * count))
    return size * count
}
