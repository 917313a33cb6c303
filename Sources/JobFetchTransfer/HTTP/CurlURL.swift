import CCurl
import JobFetchCore

/// libcurl's reading of a URL, to hold `ParsedURL` (the core's own RFC 3986
/// parser, which decides where credentials may go) to what libcurl will
/// actually connect to. A request whose URL the two read differently is
/// never sent.
enum CurlURL {
    /// scheme://host:port as libcurl's URL API reads `text`, or nil if it refuses it.
    static func origin(_ text: String) -> String? {
        guard let h = curl_url() else { return nil }
        defer { curl_url_cleanup(h) }
        guard curl_url_set(h, CURLUPART_URL, text, UInt32(CURLU_NON_SUPPORT_SCHEME)) == CURLUE_OK else { return nil }
        func part(_ p: CURLUPart, _ flags: Int32 = 0) -> String? {
            var out: UnsafeMutablePointer<CChar>?
            guard curl_url_get(h, p, &out, UInt32(flags)) == CURLUE_OK, let out else { return nil }
            defer { curl_free(out) }
            return String(cString: out)
        }
        guard let scheme = part(CURLUPART_SCHEME)?.lowercased(), let host = part(CURLUPART_HOST)?.lowercased(),
              let port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT) else { return nil }
        return "\(scheme)://\(host):\(port)"
    }

    /// Throws unless libcurl reads `url.text` as the same origin the daemon decided on.
    static func checkAgreement(_ url: ParsedURL) throws(CurlError) {
        let theirs = origin(url.text)
        guard theirs == url.origin else {
            throw CurlError(CURLE_URL_MALFORMAT, detail: "libcurl reads \(url.redacted) as \(theirs ?? "no URL"), not \(url.origin); not sent")
        }
    }
}
