import Glibc

public enum Timestamp {
    /// The times this program deals in: from 1970 to the end of year 9999.
    public static let range = 0.0...253_402_300_799.0

    /// `t` when it is such a time, else nil (a number from outside may be anything).
    public static func plausible(_ t: Double) -> Double? { range.contains(t) ? t : nil }

    /// RFC 3339 UTC with milliseconds. Total: a time outside `range` (or not
    /// a number) is shown clamped to it, never trapped on.
    public static func iso8601(_ time: Double) -> String {
        let t = time.isNaN ? 0 : min(max(time, range.lowerBound), range.upperBound)
        var secs = time_t(t.rounded(.down))
        var tmv = tm()
        gmtime_r(&secs, &tmv)
        let ms = min(999, Int((t - Double(secs)) * 1000))
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)).\(msText)Z"
    }

    /// RFC 3339 / ISO 8601 as APIs write it: `2026-11-22T10:00:00Z`, with
    /// optional fraction, a `±hh:mm` offset (none means UTC) and `T` or a space.
    public static func parse(_ text: String) -> Double? {
        let b = Array(text.trimmingWhitespace().utf8)
        func num(_ from: Int, _ count: Int) -> Int32? {
            guard from + count <= b.count else { return nil }
            var v: Int32 = 0
            for c in b[from..<(from + count)] {
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int32(c - 48)
            }
            return v
        }
        guard b.count >= 19, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
              let year = num(0, 4), let month = num(5, 2), let day = num(8, 2),
              let hour = num(11, 2), let minute = num(14, 2), let second = num(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { fraction += Double(b[i] - 48) * scale; scale /= 10; i += 1 }
            guard i > start else { return nil }
        }
        var offset: Int32 = 0
        if i < b.count {
            if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                i += 1
            } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign: Int32 = b[i] == UInt8(ascii: "-") ? -1 : 1
                guard let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == UInt8(ascii: ":"), let om = num(i + 4, 2) else { return nil }
                offset = sign * (oh * 3600 + om * 60)
                i += 6
            }
        }
        guard i == b.count else { return nil }
        var t = tm()
        t.tm_year = year - 1900
        t.tm_mon = month - 1
        t.tm_mday = day
        t.tm_hour = hour
        t.tm_min = minute
        t.tm_sec = second
        return Double(timegm(&t) - time_t(offset)) + fraction
    }
}
