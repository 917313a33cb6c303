import Glibc

/// An absolute http(s) URL, parsed in pure Swift (RFC 3986) so that the core
/// module need not link libcurl. libcurl still does the connecting, from
/// `text`, so the parser is held to this: whatever it accepts, libcurl 7.88.1
/// accepts too (the input and `text`) and agrees on scheme, host, port and
/// whether there is a query (checked by Fuzz/FuzzURLAgreement). It is stricter
/// than libcurl where libcurl is lenient; it rejects:
/// - bytes other than printable ASCII (spaces, control bytes, non-ASCII: curl
///   takes UTF-8 host names raw and passes them to IDN) and any `\` (which
///   WHATWG parsers read as `/`, so another parser could see another host);
/// - anything but exactly `//` after the scheme (curl takes 1 to 3 slashes),
///   a scheme that is not `http`/`https`, an empty host, an empty port
///   (`h:`, which curl ignores), a port with anything but digits or above 65535;
/// - host names with characters other than `A-Z a-z 0-9 - . _` (curl
///   percent-decodes `%` in a host name and takes `~`, `|` and others), empty
///   labels (`a..b`, a trailing dot), and numeric hosts not in dotted-decimal
///   form: curl reads `2130706433`, `0x7f.1` and `0177.0.0.1` as 127.0.0.1, so
///   a host that curl's ipv4_normalize could take for a number must already
///   be what it normalizes to (four decimal parts 0-255, no leading zeros);
/// - IPv6 zone IDs (`[fe80::1%25eth0]`); user info that is empty or has bytes
///   outside RFC 3986's userinfo set (curl splits at the first `@`, RFC at the
///   last; with `@` not allowed in user info the two agree);
/// - a relative reference that is empty or only a fragment: RFC 3986 resolves
///   it to the base document itself, curl 7.88 to the base's directory
///   (`http://a/b/c/d;p?q` + `#s`: RFC `…/d;p?q#s`, curl `…/c/#s`, no query).
///   Neither is a result or redirect a daemon should follow.
/// Normalized in `text` as curl normalizes: scheme and (here also) host
/// lowercased, dot segments removed (curl does so for absolute URLs too),
/// empty path → `/`, port without leading zeros (kept even when the default),
/// an IPv6 address shortened when inet_ntop's form is shorter (as curl does),
/// an empty fragment (`#`) dropped. Kept as given: percent-encoding, user
/// info, a non-empty fragment, and an empty query (`?`, which curl's
/// CURLUPART_QUERY reports as a query though its URL text drops the `?`).
public struct ParsedURL: Equatable, Sendable, CustomStringConvertible {
    public let text: String
    public let scheme: String
    public let host: String
    public let port: Int
    public let hasQuery: Bool

    /// Longer URLs are refused (curl's own limit is 8 MB).
    static let maxLength = 1 << 20

    public init(_ text: String) throws(JobFetchError) {
        try self.init(text, relativeTo: nil)
    }

    /// Resolves `reference` against `base` (RFC 3986 §5.2, strict: a reference
    /// with a scheme is absolute), as a browser would. Without a base, the
    /// reference must be absolute.
    public init(_ reference: String, relativeTo base: ParsedURL?) throws(JobFetchError) {
        let quoted = JobID.quoted(ParsedURL.redact(reference))
        func invalid(_ reason: String) -> JobFetchError { JobFetchError("invalid URL \(quoted): \(reason)") }
        let noHost = JobFetchError("URL \(quoted) has no host")
        let bytes = Array(reference.utf8)
        guard !bytes.isEmpty else { throw invalid("it is empty") }
        guard bytes.count <= Self.maxLength else { throw invalid("it is longer than \(Self.maxLength) bytes") }
        if let b = bytes.first(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "\\") }) {
            throw invalid("it contains " + (b == 0x20 ? "a space" : "byte 0x" + String(b, radix: 16)))
        }
        let r = URLParts(bytes)
        let scheme: String, authority: ArraySlice<UInt8>, path: [UInt8]
        if let s = r.scheme {
            guard let first = s.first, isAlpha(first),
                  s.allSatisfy({ isAlpha($0) || isDigit($0) || "+-.".utf8.contains($0) }) else { throw invalid("bad scheme") }
            scheme = String(decoding: s, as: UTF8.self).lowercased()
            guard scheme == "http" || scheme == "https" else { throw JobFetchError("URL \(quoted) is not http or https") }
            guard let a = r.authority else { throw noHost }
            (authority, path) = (a, Self.removeDots(r.path))
        } else {
            guard let base else { throw invalid("it is not an absolute URL") }
            let b = URLParts(Array(base.text.utf8))
            scheme = base.scheme
            if let a = r.authority {
                (authority, path) = (a, Self.removeDots(r.path))
            } else {
                authority = b.authority ?? []
                if !r.path.isEmpty {
                    let merged = r.path.first == slash ? r.path : b.path[...b.path.lastIndex(of: slash)!] + r.path
                    path = Self.removeDots(merged)
                } else if r.query != nil {
                    path = Array(b.path)
                } else {
                    throw invalid("an empty or fragment-only reference names the base document itself")
                }
            }
        }

        // authority = [ userinfo "@" ] host [ ":" port ]
        var hostPart = authority, userinfo: ArraySlice<UInt8>? = nil
        if let at = authority.firstIndex(of: UInt8(ascii: "@")) {
            (userinfo, hostPart) = (authority[..<at], authority[(at + 1)...])
            guard !userinfo!.isEmpty, userinfo!.allSatisfy(isUserinfoByte) else { throw invalid("bad user info") }
        }
        guard !hostPart.isEmpty else { throw noHost }
        var hostBytes = hostPart, portBytes: ArraySlice<UInt8>? = nil
        let host: String
        if hostPart.first == UInt8(ascii: "[") {
            guard let close = hostPart.firstIndex(of: UInt8(ascii: "]")) else { throw invalid("unterminated IPv6 address") }
            hostBytes = hostPart[...close]
            let rest = hostPart[(close + 1)...]
            if let c = rest.first {
                guard c == UInt8(ascii: ":") else { throw invalid("bad port") }
                portBytes = rest.dropFirst()
            }
            let inner = hostBytes.dropFirst().dropLast()
            guard inner.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }),
                  let shortest = Self.ipv6(String(decoding: inner, as: UTF8.self)) else { throw invalid("bad IPv6 address") }
            host = "[" + (shortest.utf8.count < inner.count ? shortest : String(decoding: inner, as: UTF8.self).lowercased()) + "]"
        } else {
            if let colon = hostPart.firstIndex(of: UInt8(ascii: ":")) {
                (hostBytes, portBytes) = (hostPart[..<colon], hostPart[(colon + 1)...])
            }
            guard !hostBytes.isEmpty else { throw noHost }
            guard hostBytes.allSatisfy({ isAlpha($0) || isDigit($0) || "-._".utf8.contains($0) }) else { throw invalid("bad host name") }
            let labels = hostBytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard !labels.contains(where: \.isEmpty) else { throw invalid("empty label in host name") }
            // What curl could read as a number (each label starts with a digit, then
            // decimal, octal or 0x-hex digits) must be in the form it normalizes to.
            if labels.allSatisfy({ isDigit($0.first!) && $0.allSatisfy { isHex($0) || $0 | 0x20 == UInt8(ascii: "x") } }) {
                guard labels.count == 4, labels.allSatisfy({ l in
                    l.count <= 3 && l.allSatisfy(isDigit) && (l.count == 1 || l.first != UInt8(ascii: "0"))
                        && Int(String(decoding: l, as: UTF8.self))! <= 255
                }) else { throw invalid("a numeric host must be a dotted-decimal IPv4 address") }
            }
            host = String(decoding: hostBytes, as: UTF8.self).lowercased()
        }
        var explicitPort: Int? = nil
        if let p = portBytes {
            let digits = p.drop(while: { $0 == UInt8(ascii: "0") })
            guard !p.isEmpty, p.allSatisfy(isDigit), digits.count <= 5,
                  let n = digits.isEmpty ? 0 : Int(String(decoding: digits, as: UTF8.self)), n <= 65535 else { throw invalid("bad port") }
            explicitPort = n
        }

        var out = scheme + "://"
        if let userinfo { out += String(decoding: userinfo, as: UTF8.self) + "@" }
        out += host
        if let explicitPort { out += ":\(explicitPort)" }
        out += path.isEmpty ? "/" : String(decoding: path, as: UTF8.self)
        if let q = r.query { out += "?" + String(decoding: q, as: UTF8.self) }
        if let f = r.fragment, !f.isEmpty { out += "#" + String(decoding: f, as: UTF8.self) }
        guard out.utf8.count <= Self.maxLength else { throw invalid("it is longer than \(Self.maxLength) bytes") }
        self.text = out
        self.scheme = scheme
        self.host = host
        self.port = explicitPort ?? (scheme == "https" ? 443 : 80)
        self.hasQuery = r.query != nil
    }

    public var description: String { redacted }

    /// scheme://host:port — credentials go only to the origin they were configured for.
    public var origin: String { "\(scheme)://\(host):\(port)" }

    public var isLoopback: Bool {
        host == "localhost" || host == "[::1]" || host == "::1" || host.hasPrefix("127.")
            && host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
    }

    /// The URL without query string, fragment or user info: safe for logs
    /// and `job.json` (presigned URLs carry their signature in the query).
    public var redacted: String { ParsedURL.redact(text) }

    /// Works on bytes, as libcurl does: a `?` followed by a combining mark is
    /// one Character to Swift but still starts the query (found by fuzzing:
    /// a Character search kept such a query, signature and all).
    public static func redact(_ text: String) -> String {
        var b = Array(text.utf8)
        if let cut = b.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) { b.removeSubrange(cut...) }
        let separator = Array("://".utf8)
        if let start = (0..<max(0, b.count - 2)).first(where: { b[$0..<($0 + 3)].elementsEqual(separator) }) {
            let rest = start + 3
            let authorityEnd = b[rest...].firstIndex(of: UInt8(ascii: "/")) ?? b.endIndex
            if let at = b[rest..<authorityEnd].lastIndex(of: UInt8(ascii: "@")) { b.removeSubrange(rest...at) }
        }
        return String(decoding: b, as: UTF8.self)
    }

    /// The last non-empty path segment, percent-decoded, for naming an artifact.
    /// As curl's CURLU_URLDECODE of the path, then split on `/` (so `%2F`
    /// splits too): nil when the path decodes to a control byte, or has no segment.
    public var lastPathSegment: String? {
        let p = URLParts(Array(text.utf8)).path
        var decoded: [UInt8] = [], i = p.startIndex
        while i < p.endIndex {
            if p[i] == UInt8(ascii: "%"), i + 2 < p.endIndex, isHex(p[i + 1]), isHex(p[i + 2]) {
                decoded.append(UInt8(String(decoding: p[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)!)
                i += 3
            } else {
                decoded.append(p[i])
                i += 1
            }
            if decoded.last! < 0x20 { return nil }
        }
        return decoded.split(separator: slash).last.map { String(decoding: $0, as: UTF8.self) }
    }

    /// RFC 3986 §5.2.4 on an absolute path (or none), segment by segment.
    static func removeDots(_ path: ArraySlice<UInt8>) -> [UInt8] {
        guard !path.isEmpty else { return [] }
        let segments = path.dropFirst().split(separator: slash, omittingEmptySubsequences: false)
        var out: [ArraySlice<UInt8>] = []
        for (i, s) in segments.enumerated() {
            let isLast = i == segments.count - 1
            if s.elementsEqual(".".utf8) {
                if isLast { out.append([]) }
            } else if s.elementsEqual("..".utf8) {
                _ = out.popLast()
                if isLast { out.append([]) }
            } else {
                out.append(s)
            }
        }
        return [slash] + Array(out.joined(separator: [slash]))
    }

    /// inet_ntop's (shortest) form of an IPv6 address, nil when inet_pton refuses it.
    static func ipv6(_ text: String) -> String? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        var buffer = [CChar](repeating: 0, count: 64)
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// RFC 3986 appendix B: `^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?`.
struct URLParts {
    var scheme, authority, query, fragment: ArraySlice<UInt8>?
    var path: ArraySlice<UInt8>

    init(_ bytes: [UInt8]) {
        var rest = bytes[...]
        if let hash = rest.firstIndex(of: UInt8(ascii: "#")) { (fragment, rest) = (rest[(hash + 1)...], rest[..<hash]) }
        if let mark = rest.firstIndex(of: UInt8(ascii: "?")) { (query, rest) = (rest[(mark + 1)...], rest[..<mark]) }
        if let colon = rest.firstIndex(where: { $0 == UInt8(ascii: ":") || $0 == slash }),
           rest[colon] == UInt8(ascii: ":"), colon > rest.startIndex {
            (scheme, rest) = (rest[..<colon], rest[(colon + 1)...])
        }
        if rest.starts(with: [slash, slash]) {
            let a = rest.dropFirst(2)
            let end = a.firstIndex(of: slash) ?? a.endIndex
            (authority, rest) = (a[..<end], a[end...])
        }
        path = rest
    }
}

private let slash = UInt8(ascii: "/")
private func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") }
private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
private func isHex(_ b: UInt8) -> Bool { isDigit(b) || ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "f")) }
/// RFC 3986 userinfo: unreserved / pct-encoded / sub-delims / ":".
private func isUserinfoByte(_ b: UInt8) -> Bool { isAlpha(b) || isDigit(b) || "-._~%!$&'()*+,;=:".utf8.contains(b) }
