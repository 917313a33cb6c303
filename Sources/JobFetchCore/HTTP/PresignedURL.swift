import Glibc

/// When a presigned URL stops working, as the URL itself says: AWS SigV4
/// (`X-Amz-Date` + `X-Amz-Expires`), Google (`X-Goog-Date` + `X-Goog-Expires`),
/// S3 v2 and CloudFront (`Expires`, Unix seconds), Azure SAS (`se`, RFC 3339).
public enum PresignedURL {
    /// Only a plausible time (`Timestamp.range`) counts: `X-Amz-Expires=-1e300`
    /// or `Expires=1e400` is no expiry at all.
    public static func expiry(_ url: String) -> Double? {
        rawExpiry(url).flatMap(Timestamp.plausible)
    }

    static func rawExpiry(_ url: String) -> Double? {
        // By scalars: a combining mark after '?' must not hide the query.
        let u = url.unicodeScalars
        guard let q = u.firstIndex(of: "?") else { return nil }
        var params: [String: String] = [:]
        func text(_ s: Substring.UnicodeScalarView) -> String { String(String.UnicodeScalarView(s)) }
        for pair in u[u.index(after: q)...].split(separator: "#", maxSplits: 1).first?.split(separator: "&") ?? [] {
            guard let eq = pair.firstIndex(of: "=") else { continue }
            params[text(pair[..<eq]).lowercased()] = percentDecoded(text(pair[pair.index(after: eq)...]))
        }
        for (date, expires) in [("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires")] {
            if let d = params[date].flatMap(basicTime), let e = params[expires].flatMap(Double.init) { return d + e }
        }
        if let e = params["expires"].flatMap(Double.init), e > 1e9 { return e }
        if let se = params["se"] { return Timestamp.parse(se) }
        return nil
    }

    /// `20261122T100240Z`, the ISO 8601 basic form AWS and Google sign with.
    static func basicTime(_ s: String) -> Double? {
        let b = Array(s.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z") else { return nil }
        let text = String(decoding: b[0..<4], as: UTF8.self) + "-" + String(decoding: b[4..<6], as: UTF8.self) + "-"
            + String(decoding: b[6..<8], as: UTF8.self) + "T" + String(decoding: b[9..<11], as: UTF8.self) + ":"
            + String(decoding: b[11..<13], as: UTF8.self) + ":" + String(decoding: b[13..<15], as: UTF8.self) + "Z"
        return Timestamp.parse(text)
    }

    static func percentDecoded(_ s: String) -> String {
        var out: [UInt8] = []
        var bytes = s.utf8.makeIterator()
        while let c = bytes.next() {
            if c == UInt8(ascii: "%"), let h = bytes.next(), let l = bytes.next(),
               let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) {
                out.append(v)
            } else {
                out.append(c == UInt8(ascii: "+") ? 0x20 : c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
