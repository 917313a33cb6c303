import Foundation

/// Names for published files: from `Content-Disposition`, else the URL's
/// last path segment, made safe (no path separators, no leading dot, no
/// control characters, bounded length, never `job.json`).
public enum ArtifactName {
    public static func choose(contentDisposition: String?, url: ParsedURL?, contentType: String?) -> String {
        var name = contentDisposition.flatMap(filename(fromDisposition:)) ?? url?.lastPathSegment ?? ""
        name = sanitize(name)
        if name.isEmpty { name = "result" }
        if !name.contains("."), let ext = contentType.flatMap(extensionFor(contentType:)) { name += "." + ext }
        return name
    }

    /// `name`, or `artifact-name` when a document published with the result
    /// (`reserved`) has that name. Deterministic, so a download repeated after
    /// a crash replaces its own earlier file.
    public static func avoiding(_ name: String, reserved: Set<String>) -> String {
        reserved.contains(name) ? "artifact-" + name : name
    }

    public static func sanitize(_ raw: String) -> String {
        var out = ""
        for u in raw.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "." || u == "-" || u == "_"
            out.unicodeScalars.append(ok ? u : "_")
        }
        while out.hasPrefix(".") || out.hasPrefix("_") && out.count > 1 && out.dropFirst().hasPrefix(".") { out.removeFirst() }
        if out.count > 150 { out = String(out.prefix(150)) }
        if out == "job.json" || out.hasSuffix(".part") || out.hasPrefix(".") { out = "artifact-" + out }
        return out
    }

    static func filename(fromDisposition header: String) -> String? {
        // RFC 6266: prefer filename* (RFC 8187, UTF-8''percent-encoded), then filename.
        var plain: String?
        for param in header.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
            guard kv.count == 2 else { continue }
            let key = kv[0].lowercased()
            var value = kv[1]
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            if key == "filename*", let tick = value.range(of: "''") {
                if let decoded = value[tick.upperBound...].removingPercentEncoding { return FileIO.basename(decoded) }
            } else if key == "filename" {
                plain = FileIO.basename(value.replacingOccurrences(of: "\\", with: "/"))
            }
        }
        return plain
    }

    static func extensionFor(contentType: String) -> String? {
        let mime = contentType.split(separator: ";").first?.trimmingWhitespace().lowercased() ?? ""
        switch mime {
        case "text/csv": return "csv"
        case "application/json": return "json"
        case "application/x-ndjson", "application/jsonl", "application/x-jsonlines": return "jsonl"
        case "text/plain": return "txt"
        case "application/zip": return "zip"
        case "application/gzip", "application/x-gzip": return "gz"
        default: return nil
        }
    }
}
