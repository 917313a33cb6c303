import JobFetchCore

/// What the engine asks the HTTP layer for. Headers arrive final: the
/// engine has already decided which credentials this origin may see.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        /// Keep the body in memory, up to `limit` bytes (a status document).
        case memory(limit: Int)
        /// A 2xx body goes to the sink `makeSink` builds when the request
        /// starts, up to the sink's `limit`; with the sink's `range`, the
        /// request asks for part of the object (`Range` + `If-Range`). Other
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
    /// A POST with this body (a webhook); nil: a GET.
    public var post: [UInt8]?

    public init(url: ParsedURL, headers: [String], body: Body, timeout: Double?) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// Part of an object, asked for with `Range` and `If-Range`: bytes from
/// `from` through `through` (inclusive; nil: to the end), or all of the
/// object if it no longer matches `validator`.
public struct RangeRequest: Sendable, Equatable {
    public var from: Int64
    public var through: Int64?
    public var validator: String

    public init(from: Int64, through: Int64?, validator: String) {
        self.from = from
        self.through = through
        self.validator = validator
    }

    /// The `Range` value without its unit: `from-` or `from-through`.
    public var text: String { "\(from)-" + (through.map(String.init) ?? "") }
}

/// Why a sink ended its connection on purpose: no fault of the transfer.
public enum SinkStop: Sendable {
    /// Its range is whole; the rest of the object is another connection's.
    case rangeDone
    /// Another connection took its range, or the whole download, over.
    case superseded
}

/// Where the 2xx body of a file request goes (in the daemon: the `.part`
/// file and its sidecar). The transfer layer asks it where to resume, hands
/// it the answer's headers at the first body byte and every byte after, and
/// asks it at the end what became of them. A sink may want more connections
/// beside its own (the segments of a large object): the transfer layer
/// starts them with the same request, reports them under the same tag, and
/// answers once all have ended. Called on the thread that runs the `CurlMulti`.
public protocol BodySink: AnyObject {
    /// The part of the object to ask for; nil for all of it.
    var range: RangeRequest? { get }
    /// The first body byte of a 2xx answer. False stops the transfer.
    func begin(status: Int, headers: [String: String], url: ParsedURL) -> Bool
    /// More of the body. False stops the transfer.
    func write(_ data: UnsafeRawBufferPointer) -> Bool
    /// The transfer ended, whatever the reason: keep what arrived, and
    /// `durably` (a shutdown) make all of it count for the next resume.
    func finish(durably: Bool)
    /// The most bytes the body may have (libcurl stops the transfer beyond it).
    var limit: Int64 { get }
    /// Bytes of the object in the file, from every connection and a resumed part.
    var size: Int64 { get }
    /// Bytes of the object that were in the file before the download started.
    var resumedBytes: Int64 { get }
    /// The whole object's length, when the server said.
    var expectedLength: Int64? { get }
    /// The object is fetched in ranges over several connections (its answer
    /// is then whole only when every range is).
    var isSegmented: Bool { get }
    /// Every byte of the object is in the file (a segmented download).
    var isComplete: Bool { get }
    /// Writing failed (disk full…).
    var error: SystemError? { get }
    /// The body is larger than the request's limit.
    var tooLarge: Bool { get }
    /// The download stopped because what arrived cannot be decoded (the
    /// decompressor following it failed).
    var undecodable: Bool { get }
    /// The download failed (a write error, too large, a mismatch, undecodable):
    /// every connection of it is ended, those that wait for bytes included.
    var aborted: Bool { get }
    /// Why an answer could not be placed in the file (another range, another object).
    var mismatch: String? { get }
    /// Set when the sink ended its connection on purpose.
    var stop: SinkStop? { get }
    /// This connection carries the object as one stream: when the download
    /// is not segmented, its answer is the download's.
    var carriesStream: Bool { get }
    /// The object's first answer's headers that name it (`Content-Disposition`,
    /// `Content-Type`), kept across restarts: a resumed answer may lack them.
    var namingHeaders: [String: String] { get }
    /// Sinks for connections to start beside this one; each is handed out once.
    func takeConnections() -> [any BodySink]
}
