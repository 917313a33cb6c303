import CCurl

/// A libcurl result code, with libcurl's own detailed message where there is one.
public struct CurlError: Error, CustomStringConvertible, Equatable, Sendable {
    public let code: Int32
    public let detail: String

    public init(_ code: CURLcode, detail: String = "") {
        self.code = Int32(code.rawValue)
        self.detail = detail
    }

    public var name: String { String(cString: curl_easy_strerror(CURLcode(UInt32(code)))) }
    public var description: String { detail.isEmpty ? name : "\(name): \(detail)" }

    public static func check(_ rc: CURLcode, _ what: @autoclosure () -> String) throws(CurlError) {
        guard rc == CURLE_OK else { throw CurlError(rc, detail: "setting \(what())") }
    }

    /// Errors after which the same request may well succeed later.
    public var isTransient: Bool {
        switch CURLcode(UInt32(code)) {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
             CURLE_OPERATION_TIMEDOUT, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING,
             CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR, CURLE_HTTP2, CURLE_HTTP2_STREAM,
             CURLE_HTTP3, CURLE_QUIC_CONNECT_ERROR, CURLE_AGAIN:
            return true
        default:
            return false
        }
    }
}
