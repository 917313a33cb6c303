/// `Content-Range: bytes 100-199/1000`, or `bytes */1000` on a 416.
public struct ContentRange: Equatable, Sendable {
    public var start: Int64?
    public var end: Int64?
    public var total: Int64?

    public static func parse(_ header: String?) -> ContentRange? {
        guard let h = header?.trimmingWhitespace(), h.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = h.dropFirst(6).trimmingWhitespace()
        let parts = spec.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        let total = parts[1] == "*" ? nil : Int64(parts[1]).flatMap { $0 >= 0 ? $0 : nil }
        guard parts[1] == "*" || total != nil else { return nil }
        if parts[0] == "*" { return ContentRange(start: nil, end: nil, total: total) }
        let se = parts[0].split(separator: "-", maxSplits: 1).compactMap { Int64($0) }
        guard se.count == 2, se[0] >= 0, se[1] >= se[0] else { return nil }
        return ContentRange(start: se[0], end: se[1], total: total)
    }
}
