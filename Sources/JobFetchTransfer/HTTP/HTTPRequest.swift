import JobFetchCore

/// What the engine asks the HTTP layer for. Headers arrive final: the
/// engine has already decided which credentials this origin may see.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        /// Keep the body in memory, up to `limit` bytes (a status document).
        case memory(limit: Int)
        /// A 2xx body goes to the sink `makeSink` builds when the request
        /// starts, up to the sink's `limit`; with the sink's `resumeFrom`,
        /// the request asks for the rest (`Range` + `If-Range`). Other
        /// bodies stay in memory for messages.
        case file(makeSink: @Sendable () -> any BodySink)
    }

    public var url: ParsedURL
    public var headers: [String]
    public var body: Body
    /// Whole-request time limit; nil for downloads, which use the low-speed limit.
    public var timeout: Double?
    public var connectTimeout: Double = 15
    /// Stop when slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` seconds.
    public var lowSpeedLimit = 1
    public var lowSpeedTime: Double = 60
    public var acceptEncoding = false

    public init(url: ParsedURL, headers: [String], body: Body, timeout: Double?) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// Where the 2xx body of a file request goes (in the daemon: the `.part`
/// file and its sidecar). The transfer layer asks it where to resume, hands
/// it the answer's headers at the first body byte and every byte after, and
/// asks it at the end what became of them. Called on the thread that runs
/// the `CurlMulti`.
public protocol BodySink: AnyObject {
    /// Ask for the rest of the object from `offset`, or (`If-Range`) all of
    /// it if it no longer matches `validator`; nil for a fresh download.
    var resumeFrom: (offset: Int64, validator: String)? { get }
    /// The first body byte of a 2xx answer. False stops the transfer.
    func begin(status: Int, headers: [String: String], url: ParsedURL) -> Bool
    /// More of the body. False stops the transfer.
    func write(_ data: UnsafeRawBufferPointer) -> Bool
    /// The transfer ended, whatever the reason: keep what arrived, and
    /// `durably` (a shutdown) make all of it count for the next resume.
    func finish(durably: Bool)
    /// The most bytes the body may have (libcurl stops the transfer beyond it).
    var limit: Int64 { get }
    /// Bytes in the file, a resumed prefix included.
    var size: Int64 { get }
    /// The whole object's length, when the server said.
    var expectedLength: Int64? { get }
    /// Writing failed (disk full…).
    var error: SystemError? { get }
    /// The body is larger than the request's limit.
    var tooLarge: Bool { get }
    /// Why a 206 could not continue what is there (another range, another object).
    var mismatch: String? { get }
}
