import CCurl
import JobFetchCore

extension CurlError {
    package init(_ code: CURLcode, detail: String = "") {
        self.init(code: Int32(code.rawValue), name: String(cString: curl_easy_strerror(code)), detail: detail)
    }

    static func check(_ rc: CURLcode, _ what: @autoclosure () -> String) throws(CurlError) {
        guard rc == CURLE_OK else { throw CurlError(rc, detail: "setting \(what())") }
    }
}
