/// A transfer that failed before an HTTP answer was complete, as libcurl
/// reports it: its result code, its name for the code and its detailed
/// message. Plain data here; the transfer layer builds it from a `CURLcode`.
public struct CurlError: Error, CustomStringConvertible, Equatable, Sendable {
    public let code: Int32
    /// libcurl's name for the code ("Timeout was reached").
    public let name: String
    public let detail: String

    /// A failure as libcurl would report it (the simulator's transfers fail this way).
    public init(code: Int32, name: String, detail: String = "") {
        self.code = code
        self.name = name
        self.detail = detail
    }

    public var description: String { detail.isEmpty ? name : "\(name): \(detail)" }

    /// libcurl's CURLE_FILESIZE_EXCEEDED (part of its stable ABI).
    public static let fileSizeExceeded: Int32 = 63

    /// The transfer stopped at `max_artifact_size`.
    public var isFileSizeExceeded: Bool { code == CurlError.fileSizeExceeded }
}
