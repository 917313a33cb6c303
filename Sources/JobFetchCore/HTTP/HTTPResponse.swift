import Glibc

public struct HTTPResponse: Sendable {
    /// 0 when no HTTP answer arrived (then `error` says why).
    public var status: Int
    /// Header names lowercased; the last value of a repeated header.
    public var headers: [String: String]
    /// The body (memory requests), or the start of a non-2xx body (file requests).
    public var body: [UInt8]
    /// Bytes in the file (the resumed prefix included), for file requests.
    public var bytesWritten: Int64
    /// The offset a ranged request asked to resume from (0: none).
    public var resumedFrom: Int64 = 0
    /// Why a 206 could not be appended to the part; the download starts over.
    public var rangeMismatch: String?
    public var error: CurlError?
    /// Set when writing the file failed (disk full, …): the transfer stopped.
    public var writeError: SystemError?
    public var bodyTooLarge: Bool
    /// The download was stopped early: what arrived cannot be decoded (its
    /// decompressor says why).
    public var undecodable = false
    public var seconds: Double

    public init(status: Int, headers: [String: String], body: [UInt8], bytesWritten: Int64 = 0, resumedFrom: Int64 = 0,
                rangeMismatch: String? = nil, error: CurlError? = nil, writeError: SystemError? = nil,
                bodyTooLarge: Bool = false, seconds: Double = 0) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bytesWritten = bytesWritten
        self.resumedFrom = resumedFrom
        self.rangeMismatch = rangeMismatch
        self.error = error
        self.writeError = writeError
        self.bodyTooLarge = bodyTooLarge
        self.seconds = seconds
    }

    public var isSuccess: Bool { error == nil && (200..<300).contains(status) }

    /// The start of the body as printable text, for messages about bad answers.
    public var bodySnippet: String {
        let prefix = body.prefix(200)
        var s = String(decoding: prefix, as: UTF8.self)
        s = String(s.map { $0.isNewline || $0 == "\t" ? " " : $0 })
        return body.count > 200 ? s + "…" : s
    }

    /// How long the server asks us to wait, in seconds from now: `Retry-After`
    /// (delta-seconds or an HTTP date), else on a 429 a rate-limit reset
    /// header (`RateLimit-Reset`, `X-RateLimit-Reset`: seconds, or a Unix time).
    public func retryAfter(now: Double) -> Double? {
        if let v = headers["retry-after"]?.trimmingWhitespace() {
            if let n = Double(v), n >= 0, n.isFinite { return n }
            if let date = HTTPDate.parse(v) { return max(0, date - now) }
        }
        guard status == 429 else { return nil }
        for name in ["ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset"] {
            guard let v = headers[name]?.trimmingWhitespace(), let n = Double(v), n >= 0, n.isFinite else { continue }
            // A number this large is a point in time, not a number of seconds.
            return n > 1e9 ? max(0, n - now) : n
        }
        return nil
    }
}

/// What an HTTP status means for a job (SPEC.md "HTTP answers").
public enum AnswerClass: Sendable, Equatable {
    case success, redirect, notFound, credentials, rateLimited, transient, refused

    public init(status: Int) {
        switch status {
        case 200..<300: self = .success
        case 301, 302, 303, 307, 308: self = .redirect
        case 404: self = .notFound
        case 401, 403: self = .credentials
        case 429: self = .rateLimited
        case 408, 425, 500..<600: self = .transient
        default: self = .refused
        }
    }
}

enum HTTPDate {
    /// IMF-fixdate, as `Retry-After` and `Last-Modified` carry it.
    static func parse(_ s: String) -> Double? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        // Each field in its range: `year - 1900` of Int32.min would trap (found by fuzzing).
        guard parts.count == 6, parts[5] == "GMT", let day = Int32(parts[1]), (1...31).contains(day),
              let month = months.firstIndex(of: String(parts[2])), let year = Int32(parts[3]), (1900...9999).contains(year) else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int32($0) }
        guard hms.count == 3, (0...23).contains(hms[0]), (0...59).contains(hms[1]), (0...60).contains(hms[2]) else { return nil }
        var t = tm()
        t.tm_year = year - 1900
        t.tm_mon = Int32(month)
        t.tm_mday = day
        t.tm_hour = hms[0]
        t.tm_min = hms[1]
        t.tm_sec = hms[2]
        return Double(timegm(&t))
    }
}
