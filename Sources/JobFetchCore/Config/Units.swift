/// Parsers for the config file's durations (`500ms`, `30s`, `5m`, `2h`, `7d`)
/// and sizes (`512`, `64k`, `5M`, `2G`, binary multiples).
public enum Units {
    /// The longest duration the config takes: 100 years. Anything longer is
    /// a mistake, and seconds of this size still fit every conversion the
    /// program makes (milliseconds in an Int, a time_t).
    public static let maxDuration = 100 * 365 * 86400.0

    public static func duration(_ text: String) -> Double? {
        let t = text.trimmingWhitespace()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let v = Double(number), v.isFinite else { return nil }
            // Checked after the unit: a 307-digit number of days is finite, its seconds are not (found by fuzzing).
            let seconds = v * factor
            return seconds <= maxDuration ? seconds : nil
        }
        return nil
    }

    public static func size(_ text: String) -> Int64? {
        let t = text.trimmingWhitespace()
        guard let last = t.last else { return nil }
        let factors: [Character: Int64] = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20,
                                           "g": 1 << 30, "G": 1 << 30, "t": 1 << 40, "T": 1 << 40]
        let factor = factors[last] ?? 1
        let digits = factors[last] == nil ? Substring(t) : t.dropLast()
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let v = Int64(digits) else { return nil }
        let (r, overflow) = v.multipliedReportingOverflow(by: factor)
        return overflow ? nil : r
    }

    /// Total: a duration computed from a server's numbers may be anything.
    public static func formatDuration(_ value: Double) -> String {
        guard !value.isNaN else { return "?" }
        let seconds = min(max(value, -1e15), 1e15)
        if seconds < 0 { return "-" + formatDuration(-seconds) }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 120 { return seconds == seconds.rounded() ? "\(Int(seconds))s" : String(format1: seconds) + "s" }
        if seconds < 7200 { return "\(Int((seconds / 60).rounded()))m" }
        if seconds < 172800 { return "\(Int((seconds / 3600).rounded()))h" }
        return "\(Int((seconds / 86400).rounded()))d"
    }

    public static func formatBytes(_ n: Int64) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return String(format1: v) + " " + units[i]
    }
}

extension String {
    init(format1 v: Double) {
        let tenths = Int((v * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}

extension StringProtocol {
    package func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s.removeLast() }
        return String(s)
    }
}
