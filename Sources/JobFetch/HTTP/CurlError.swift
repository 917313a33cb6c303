import CCurl

/// A libcurl result code, with libcurl's own detailed message where there is one.
public struct CurlError: Error, CustomStringConvertible, Equatable, Sendable {
    public let code: Int32
    /// libcurl's name for the code ("Timeout was reached").
    public let name: String
    public let detail: String

    public init(_ code: CURLcode, detail: String = "") {
        self.init(code: Int32(code.rawValue), name: String(cString: curl_easy_strerror(code)), detail: detail)
    }

    /// A failure as libcurl would report it (the simulator's transfers fail this way).
    public init(code: Int32, name: String, detail: String = "") {
        self.code = code
        self.name = name
        self.detail = detail
    }

    public var description: String { detail.isEmpty ? name : "\(name): \(detail)" }

    /// The transfer stopped at `max_artifact_size`.
    public var isFileSizeExceeded: Bool { code == Int32(CURLE_FILESIZE_EXCEEDED.rawValue) }

    public static func check(_ rc: CURLcode, _ what: @autoclosure () -> String) throws(CurlError) {
        guard rc == CURLE_OK else { throw CurlError(rc, detail: "setting \(what())") }
    }
}
