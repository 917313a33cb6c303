/// Text that came from outside (a status value, an API's error message, a
/// header) on its way to a terminal, the journal or the store: cut to a size
/// that cannot exhaust memory or disk, and escaped so that it can neither
/// split a line nor drive a terminal.
public enum ServerText {
    /// How much of one piece of server text is stored, logged or shown.
    public static let maxBytes = 1024

    /// `text` cut to at most `limit` UTF-8 bytes, the marker saying how much
    /// was left out included (so cutting again changes nothing), at a
    /// character boundary.
    public static func capped(_ text: String, limit: Int = maxBytes) -> String {
        let utf8 = text.utf8
        guard utf8.count > limit else { return text }
        var end = utf8.index(utf8.startIndex, offsetBy: max(0, limit - 32))
        // Back off to the start of a scalar: never cut one in two.
        while end > utf8.startIndex, UTF8.isContinuation(utf8[end]) { end = utf8.index(before: end) }
        let kept = String(decoding: utf8[..<end], as: UTF8.self)
        return kept + "…[\(utf8.count - utf8.distance(from: utf8.startIndex, to: end)) more bytes]"
    }

    /// `text` with every character a terminal or a log reader would act on
    /// made visible: C0 controls (line breaks and ESC among them), DEL, C1
    /// controls, the Unicode line and paragraph separators, the
    /// bidirectional overrides (which reorder what a reader sees) and the
    /// invisible characters (which hide text between what a reader sees). `\n`,
    /// `\r` and `\t` become those escapes; the rest `\xNN` or `\u{NNNN}`.
    /// A backslash stays as it is: the output is for reading, not parsing
    /// (`--json` output is JSON-escaped instead).
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        for s in text.unicodeScalars {
            guard needsEscape(s) else { out.unicodeScalars.append(s); continue }
            switch s {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let hex = String(s.value, radix: 16, uppercase: true)
                out += s.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" : "") + hex : "\\u{" + hex + "}"
            }
        }
        return out
    }

    /// The first `max` of `lines`, and when there were more, one line saying
    /// how many more (`more(count)`): a list from outside stays short.
    public static func firstOf(_ lines: [String], max: Int, more: (Int) -> String) -> [String] {
        lines.count <= max ? lines : Array(lines.prefix(max)) + [more(lines.count - max)]
    }

    /// Both: what any log line, table cell or `status` line shows of server text.
    public static func shown(_ text: String, limit: Int = maxBytes) -> String { escaped(capped(text, limit: limit)) }

    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0..<0x20, 0x7F...0x9F: return true
        case 0x2028, 0x2029: return true  // line and paragraph separators
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: return true  // bidi controls
        case 0x200B...0x200D, 0x2060...0x2064, 0xFEFF, 0x00AD: return true  // invisible: zero width, word joiner, BOM, soft hyphen
        default: return false
        }
    }
}
