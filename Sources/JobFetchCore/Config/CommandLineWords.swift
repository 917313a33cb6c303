/// Splits `on_complete`'s value into a program and its arguments the way a
/// shell splits words, and nothing more: no variables, globs, pipes or
/// redirections (the program is run with no shell).
public enum CommandLineWords {
    public enum Result: Equatable, Sendable {
        case success([String])
        case failure(String)
    }

    /// Blanks separate words; '…' keeps everything literally; "…" keeps
    /// everything but `\"` and `\\`; a backslash outside quotes keeps the next character.
    public static func split(_ text: String) -> Result {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        var it = text.makeIterator()
        while let c = it.next() {
            switch quote {
            case "'":
                if c == "'" { quote = nil } else { word.append(c) }
            case "\"":
                if c == "\"" {
                    quote = nil
                } else if c == "\\" {
                    guard let n = it.next() else { return .failure("ends inside a \"…\" quote") }
                    if n != "\"" && n != "\\" { word.append(c) }
                    word.append(n)
                } else {
                    word.append(c)
                }
            default:
                if c == " " || c == "\t" {
                    if inWord { words.append(word); word = ""; inWord = false }
                } else if c == "'" || c == "\"" {
                    quote = c
                    inWord = true
                } else if c == "\\" {
                    guard let n = it.next() else { return .failure("ends with a lone backslash") }
                    word.append(n)
                    inWord = true
                } else {
                    word.append(c)
                    inWord = true
                }
            }
        }
        if let q = quote { return .failure("a \(q) quote is not closed") }
        if inWord { words.append(word) }
        if words.contains(where: { $0.contains("\0") }) { return .failure("contains a NUL character") }
        return .success(words)
    }
}
