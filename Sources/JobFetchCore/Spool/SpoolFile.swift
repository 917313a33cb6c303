import Glibc

/// The spool file format: job IDs one per line, blank lines and `#`
/// comments ignored; an empty file's name is its one ID.
public enum SpoolFile {
    public struct LineProblem: Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var message: String

        package init(line: Int, message: String) {
            self.line = line
            self.message = message
        }
        public var description: String { line > 0 ? "line \(line): \(message)" : message }
    }

    public struct Contents: Sendable, Equatable {
        public var ids: [JobID] = []
        public var problems: [LineProblem] = []
    }

    /// Files larger than this are refused whole: a spool file is a list of IDs.
    public static let maxSize = 16 << 20

    public static func parse(name: String, bytes: [UInt8]) -> Contents {
        var out = Contents()
        if bytes.isEmpty {
            do { out.ids.append(try JobID(name)) } catch {
                out.problems.append(LineProblem(line: 0, message: "the file is empty, so its name is the ID, but \(error.message)"))
            }
            return out
        }
        var seen = Set<JobID>()
        var lineNumber = 0
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = raw[...]
            while let f = line.first, f == 0x20 || f == 0x09 { line = line.dropFirst() }
            while let l = line.last, l == 0x20 || l == 0x09 || l == 0x0D { line = line.dropLast() }
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            guard let text = String(validating: line, as: UTF8.self) else {
                out.problems.append(LineProblem(line: lineNumber, message: "not valid UTF-8 text"))
                continue
            }
            do {
                let id = try JobID(text)
                if seen.insert(id).inserted { out.ids.append(id) }
            } catch {
                out.problems.append(LineProblem(line: lineNumber, message: error.message))
            }
        }
        if out.ids.isEmpty && out.problems.isEmpty {
            out.problems.append(LineProblem(line: 0, message: "the file holds only blank lines and comments"))
        }
        return out
    }

    public static func render(_ ids: [JobID]) -> [UInt8] {
        Array(ids.map { $0.rawValue + "\n" }.joined().utf8)
    }
}

/// Where requests go: `<spool>/<kind>/` registers, `.cancel/<kind>/` and
/// `.retry/<kind>/` carry the operator's other requests.
public enum SpoolRequest: String, Sendable, CaseIterable {
    case register, cancel, retry

    public func directory(spool: String, kind: String) -> String {
        switch self {
        case .register: return "\(spool)/\(kind)"
        case .cancel: return "\(spool)/.cancel/\(kind)"
        case .retry: return "\(spool)/.retry/\(kind)"
        }
    }
}

/// Drops a request file into the spool the safe way: a dotfile, fsync,
/// rename into place, fsync of the directory.
public enum SpoolWriter {
    @discardableResult
    public static func submit(_ ids: [JobID], kind: String, request: SpoolRequest = .register, spool: String) throws(SystemError) -> String {
        let dir = request.directory(spool: spool, kind: kind)
        try FileIO.makeSharedDirectories(dir)
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let name = "ctl-\(ts.tv_sec)-\(ts.tv_nsec)-\(getpid())"
        // writeAtomically writes a dotfile beside the target and renames it.
        try FileIO.writeAtomically(dir + "/" + name, SpoolFile.render(ids), mode: 0o664)
        return dir + "/" + name
    }
}
