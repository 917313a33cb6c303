import Foundation
import Glibc

/// Reads `daemon.conf`: INI sections `[daemon]` and `[kind NAME]`, `key = value`
/// lines, `#`/`;` comment lines, and a `#` after white space ending a value.
/// Values may use `${env:NAME}`, `${file:PATH}` and `${credential:NAME}`.
public struct ConfigParser {
    public struct Environment: Sendable {
        public var variables: [String: String]
        public var credentialsDirectory: String? { variables["CREDENTIALS_DIRECTORY"] }
        public init(_ variables: [String: String]) { self.variables = variables }
        public static var process: Environment {
            var vars: [String: String] = [:]
            var p = environ
            while let entry = p.pointee {
                let s = String(cString: entry)
                if let eq = s.firstIndex(of: "=") { vars[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
                p += 1
            }
            return Environment(vars)
        }
    }

    static let daemonKeys = ["spool_dir", "state_dir", "output_dir", "max_downloads", "max_polls", "log_level",
                             "max_artifact_size", "max_output_size", "max_compression_ratio", "min_free_space", "metrics_file",
                             "max_host_connections", "connect_timeout", "low_speed_limit", "low_speed_time",
                             "segments", "segment_min_size", "segment_below_rate", "keep_results", "forget_after", "max_hooks",
                             "store", "node_name", "lease"] + hookKeys
    static let kindKeys = ["preset", "status_url", "header", "poll_interval", "max_poll_interval", "timeout",
                           "rate_limit", "not_found_grace", "allow_insecure_http", "segments"] + hookKeys + StatusMapping.keys
    /// Keys of `[daemon]` (for every kind) and of a kind (for its own jobs).
    static let hookKeys = ["on_complete", "notify_url", "notify_secret", "hook_timeout", "hook_retries"]
    static let repeatable: Set<String> = ["header"]

    /// Whether `${…}` references are resolved while checking. The daemon
    /// resolves them (a missing secret is a config error it must report);
    /// `jobfetchctl` does not: it runs outside the service, without
    /// `$CREDENTIALS_DIRECTORY` and usually without read access to the
    /// secret files, and needs none of them.
    public enum Secrets: Sendable { case resolve, syntaxOnly }

    let file: String
    let environment: Environment
    var secretsMode: Secrets = .resolve
    let secrets = SecretFileCache()
    var problems: [ConfigProblem] = []
    /// The file is readable by others than its owner: a credential written
    /// into a `header` line is worth a warning.
    var sharedFile = false
    var warnings: [ConfigProblem] = []

    /// Reads and checks the file; throws every problem found, with its line.
    public static func load(path: String, environment: Environment = .process, secrets: Secrets = .resolve) throws(ConfigErrors) -> Config {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path, limit: 1 << 20) } catch {
            throw ConfigErrors(problems: [ConfigProblem(file: path, line: 0, key: nil, message: "cannot read the config file: \(error)")])
        }
        // A token written into a file that others may read is worth a warning:
        // the packaged config is readable by the submit group.
        var st = stat()
        let shared = stat(path, &st) == 0 && st.st_mode & 0o044 != 0
        return try parse(String(decoding: bytes, as: UTF8.self), file: path, environment: environment, secrets: secrets, sharedFile: shared)
    }

    /// `sharedFile`: the text comes from a file others than its owner may read.
    public static func parse(_ text: String, file: String, environment: Environment = .process, secrets: Secrets = .resolve,
                             sharedFile: Bool = false) throws(ConfigErrors) -> Config {
        var parser = ConfigParser(file: file, environment: environment)
        parser.secretsMode = secrets
        parser.sharedFile = sharedFile
        var config = parser.run(text)
        guard parser.problems.isEmpty else { throw ConfigErrors(problems: parser.problems) }
        config.warnings = parser.warnings
        return config
    }

    private mutating func problem(_ line: Int, _ key: String?, _ message: String, suggestion: String? = nil) {
        problems.append(ConfigProblem(file: file, line: line, key: key, message: message, suggestion: suggestion))
    }

    private struct Entry { var key: String; var value: String; var line: Int }
    private struct Section { var name: String; var kind: String?; var line: Int; var entries: [Entry] = [] }

    private mutating func run(_ text: String) -> Config {
        var sections: [Section] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { problem(lineNumber, nil, "section header is missing its closing ']'"); continue }
                let inner = line.dropFirst().dropLast().trimmingWhitespace()
                let words = inner.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                if words == ["daemon"] {
                    if sections.contains(where: { $0.name == "daemon" }) { problem(lineNumber, nil, "[daemon] appears twice") }
                    sections.append(Section(name: "daemon", kind: nil, line: lineNumber))
                } else if words.count == 2 && words[0] == "kind" {
                    if let why = KindName.problem(with: words[1]) { problem(lineNumber, nil, why) }
                    if sections.contains(where: { $0.kind == words[1] }) { problem(lineNumber, nil, "[kind \(words[1])] appears twice") }
                    sections.append(Section(name: "kind", kind: words[1], line: lineNumber))
                } else {
                    let s = Suggest.nearest(words.first ?? "", in: ["daemon", "kind"])
                    problem(lineNumber, nil, "unknown section [\(inner)]; sections are [daemon] and [kind NAME]",
                            suggestion: s == "kind" && words.count == 2 ? "kind \(words[1])" : s)
                    sections.append(Section(name: "invalid", kind: nil, line: lineNumber))
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                problem(lineNumber, nil, "expected 'key = value', a [section] or a comment"); continue
            }
            let key = line[..<eq].trimmingWhitespace()
            var value = String(line[line.index(after: eq)...])
            if let hash = value.ranges(of: " #").first ?? value.ranges(of: "\t#").first { value = String(value[..<hash.lowerBound]) }
            value = value.trimmingWhitespace()
            guard !key.isEmpty else { problem(lineNumber, nil, "a line has '=' but no key"); continue }
            guard !sections.isEmpty else {
                problem(lineNumber, key, "key is outside any section; put it under [daemon] or [kind NAME]"); continue
            }
            sections[sections.count - 1].entries.append(Entry(key: key, value: value, line: lineNumber))
        }

        var daemon = DaemonSettings()
        var kinds: [KindConfig] = []
        for section in sections {
            switch section.name {
            case "daemon": readDaemon(section, into: &daemon)
            case "kind": if let k = readKind(section) { kinds.append(k) }
            default: break
            }
        }
        if kinds.isEmpty && problems.isEmpty { problem(max(lineNumber, 1), nil, "no [kind NAME] section: there is nothing to fetch") }
        // A kind's hooks: its own keys over [daemon]'s, whichever section came first.
        for i in kinds.indices {
            kinds[i].hooks = kinds[i].hooks.over(daemon.hooks)
            if kinds[i].hooks.notifyURL != nil && kinds[i].hooks.notifySecret == nil {
                problem(kinds[i].line, "notify_secret", "[kind \(kinds[i].name)] has a notify_url but no notify_secret to sign its deliveries with")
            }
        }
        return Config(file: file, daemon: daemon, kinds: kinds)
    }

    /// Validates key names and repetition; returns the entries by key.
    private mutating func entries(_ section: Section, allowed: [String]) -> [String: [Entry]] {
        var byKey: [String: [Entry]] = [:]
        let label = section.kind.map { "[kind \($0)]" } ?? "[daemon]"
        for e in section.entries {
            guard allowed.contains(e.key) else {
                let other = section.kind == nil ? Self.kindKeys : Self.daemonKeys
                let hint = other.contains(e.key) ? " (it belongs in \(section.kind == nil ? "a [kind NAME] section" : "[daemon]"))" : ""
                problem(e.line, e.key, "unknown key in \(label)\(hint)", suggestion: hint.isEmpty ? Suggest.nearest(e.key, in: allowed) : nil)
                continue
            }
            if let first = byKey[e.key]?.first, !Self.repeatable.contains(e.key) {
                problem(e.line, e.key, "given twice in \(label) (first on line \(first.line)); only header may repeat")
                continue
            }
            byKey[e.key, default: []].append(e)
        }
        return byKey
    }

    private mutating func readDaemon(_ section: Section, into d: inout DaemonSettings) {
        let byKey = entries(section, allowed: Self.daemonKeys)
        d.hooks = readHooks(byKey, insecureAllowed: false, inKind: false)
        if let e = byKey["store"]?.first { readStore(e, into: &d) }
        for (key, list) in byKey where !Self.hookKeys.contains(key) && key != "store" {
            let e = list[0]
            guard let value = expand(e) else { continue }
            switch key {
            case "node_name":
                if value.isEmpty || value.utf8.count > 64 || !value.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)) }) {
                    problem(e.line, key, "\(JobID.quoted(value)) is not a node name: 1 to 64 of A-Z a-z 0-9 . _ -")
                } else {
                    d.nodeName = value
                }
            case "lease":
                if let t = duration(e, value) {
                    if t < 2 || t > 3600 { problem(e.line, key, "must be between 2s and 1h") } else { d.lease = t }
                }
            case "spool_dir": if let p = path(e, value) { d.spoolDir = p }
            case "state_dir": if let p = path(e, value) { d.stateDir = p }
            case "output_dir": if let p = path(e, value) { d.outputDir = p }
            case "metrics_file": if let p = path(e, value) { d.metricsFile = p }
            case "max_downloads": if let n = integer(e, value, 1...1024) { d.maxDownloads = n }
            case "max_polls": if let n = integer(e, value, 1...4096) { d.maxPolls = n }
            case "log_level":
                if let l = LogLevelName(rawValue: value.lowercased()) { d.logLevel = l } else {
                    problem(e.line, key, "\"\(value)\" is not a log level (debug, info, notice, warning, error)",
                            suggestion: Suggest.nearest(value, in: LogLevelName.allCases.map(\.rawValue)))
                }
            case "max_artifact_size": if let n = size(e, value) { d.maxArtifactSize = n }
            case "max_output_size": if let n = size(e, value) { d.maxOutputSize = n }
            case "max_host_connections": if let n = integer(e, value, 1...1024) { d.maxHostConnections = n }
            case "connect_timeout": if let t = duration(e, value) { d.connectTimeout = t }
            case "low_speed_limit": if let n = size(e, value) { d.lowSpeedLimit = n }
            case "low_speed_time": if let t = duration(e, value) { d.lowSpeedTime = t }
            case "segments": if let n = integer(e, value, 1...16) { d.segments = n }
            case "segment_min_size": if let n = size(e, value) { d.segmentMinSize = n }
            case "segment_below_rate": if let n = size(e, value) { d.segmentBelowRate = n }
            case "max_compression_ratio": if let n = integer(e, value, 10...100_000) { d.maxCompressionRatio = Double(n) }
            case "min_free_space": if let n = size(e, value, allowZero: true) { d.minFreeSpace = n }
            case "keep_results": if let t = duration(e, value) { d.keepResults = t }
            case "forget_after": if let t = duration(e, value) { d.forgetAfter = t }
            case "max_hooks": if let n = integer(e, value, 1...64) { d.maxHooks = n }
            default: break
            }
        }
        if let keep = d.keepResults, let forget = d.forgetAfter, forget < keep, let e = byKey["forget_after"]?.first {
            problem(e.line, "forget_after", "must be at least keep_results (\(Units.formatDuration(keep))): a job is forgotten only after its results are removed")
        }
        if d.outputDir == d.spoolDir {
            problem(section.line, "output_dir", "output_dir and spool_dir must differ")
        }
    }

    private mutating func readKind(_ section: Section) -> KindConfig? {
        guard let name = section.kind else { return nil }
        let before = problems.count
        let byKey = entries(section, allowed: Self.kindKeys)
        func one(_ key: String) -> Entry? { byKey[key]?.first }

        var mapping = StatusMapping()
        var presetName = "custom"
        if let e = one("preset"), let v = expand(e) {
            if let m = Preset.mapping(named: v) { mapping = m; presetName = v } else {
                problem(e.line, "preset", "unknown preset \"\(v)\"; this version knows \(Preset.names.joined(separator: ", "))",
                        suggestion: Suggest.nearest(v, in: Preset.names))
            }
        } else {
            problem(section.line, "preset", "[kind \(name)] needs a preset (\(Preset.names.joined(separator: ", ")))")
        }

        var kind = KindConfig(name: name, preset: presetName, statusURL: "", headers: [], pollInterval: 5,
                              maxPollInterval: 300, timeout: 86400, rateLimit: nil, notFoundGrace: 300,
                              allowInsecureHTTP: false, mapping: mapping, line: section.line)

        if let e = one("allow_insecure_http"), let v = expand(e) {
            switch v.lowercased() {
            case "yes", "true", "on", "1": kind.allowInsecureHTTP = true
            case "no", "false", "off", "0": kind.allowInsecureHTTP = false
            default: problem(e.line, e.key, "\"\(v)\" is not yes or no")
            }
        }
        if let e = one("status_url"), let v = expand(e) {
            checkStatusURL(e, v, insecureAllowed: kind.allowInsecureHTTP)
            kind.statusURL = v
        } else if one("status_url") == nil {
            problem(section.line, "status_url", "[kind \(name)] needs a status_url containing {id}")
        }
        for e in byKey["header"] ?? [] {
            if let t = header(e) { kind.headers.append(t) }
            if sharedFile, let name = e.value.split(separator: ":", maxSplits: 1).first, Self.looksLikeCredential(String(name)), !e.value.contains("${") {
                warnings.append(ConfigProblem(file: file, line: e.line, key: e.key, message:
                    "header \(name.trimmingWhitespace()) holds a literal credential in a file readable by others than its owner; put it in ${credential:NAME} or ${file:PATH}"))
            }
        }
        if let e = one("poll_interval"), let v = expand(e), let d = duration(e, v) { kind.pollInterval = d }
        if let e = one("max_poll_interval"), let v = expand(e), let d = duration(e, v) { kind.maxPollInterval = d }
        if let e = one("timeout"), let v = expand(e), let d = duration(e, v) { kind.timeout = d }
        if let e = one("not_found_grace"), let v = expand(e), let d = duration(e, v, allowZero: true) { kind.notFoundGrace = d }
        if let e = one("rate_limit"), let v = expand(e) { kind.rateLimit = rateLimit(e, v) }
        if let e = one("segments"), let v = expand(e), let n = integer(e, v, 1...16) { kind.segments = n }
        kind.hooks = readHooks(byKey, insecureAllowed: kind.allowInsecureHTTP, inKind: true)
        if kind.maxPollInterval < kind.pollInterval {
            problem(one("max_poll_interval")?.line ?? section.line, "max_poll_interval",
                    "is shorter than poll_interval (\(Units.formatDuration(kind.pollInterval)))")
        }

        readMapping(byKey, into: &kind.mapping)
        let missing = kind.mapping.missingKeys
        if !missing.isEmpty && problems.count == before {
            problem(section.line, missing[0], "[kind \(name)] (preset \(presetName)) must set \(missing.joined(separator: ", "))")
        }
        return problems.count == before ? kind : nil
    }

    private mutating func readMapping(_ byKey: [String: [Entry]], into m: inout StatusMapping) {
        func pointers(_ e: Entry, _ v: String) -> [JSONPointer]? {
            var out: [JSONPointer] = []
            for part in v.split(separator: ",").map({ $0.trimmingWhitespace() }) {
                do { out.append(try JSONPointer(part)) } catch {
                    problem(e.line, e.key, error.message); return nil
                }
            }
            return out
        }
        func values(_ v: String) -> [String] {
            v.split(separator: ",").map { StatusMapping.normalize(String($0)) }.filter { !$0.isEmpty }
        }
        let multiple: Set<String> = ["error_field", "warnings_field", "publish_field"]
        var pageURL: (Entry, String)?
        for key in StatusMapping.keys {
            guard let e = byKey[key]?.first, let v = expand(e) else { continue }
            switch key {
            case "running": m.running = values(v)
            case "success": m.success = values(v)
            case "failure": m.failure = values(v)
            case "partial": m.partial = values(v)
            case "paused": m.paused = values(v)
            case "summary_warn": m.summaryWarn = v.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
            case "pages_url":
                if v.isEmpty { m.pages = nil; continue }
                guard v.contains("{offset}") else { problem(e.line, key, "needs an {offset} placeholder (and usually {limit})"); continue }
                pageURL = (e, v)
            case "pages_file":
                let name = ArtifactName.sanitize(v)
                guard !v.isEmpty, name == v else { problem(e.line, key, "\"\(v)\" is not a plain file name (A-Z a-z 0-9 . _ -)"); continue }
                if m.pages == nil { m.pages = PageSpec(urlTemplate: "", itemsField: .root, totalField: nil, file: v, size: 100) }
                m.pages?.file = v
            case "page_size":
                guard let n = integer(e, v, 1...10_000) else { continue }
                if m.pages == nil { m.pages = PageSpec(urlTemplate: "", itemsField: .root, totalField: nil, file: "pages.jsonl", size: n) }
                m.pages?.size = n
            default:
                guard let ps = pointers(e, v) else { continue }
                if ps.count > 1 && !multiple.contains(key) {
                    problem(e.line, key, "takes one JSON pointer"); continue
                }
                switch key {
                case "status_field": m.statusField = ps.first
                case "result_url_field": m.resultURLField = ps.first
                case "inline_result_field": m.inlineResultField = ps.first
                case "progress_field": m.progressField = ps.first
                case "unwrap": m.unwrap = ps.first
                case "failure_time_field": m.failureTimeField = ps.first
                case "summary_field": m.summaryField = ps.first
                case "next_poll_field": m.nextPollField = ps.first
                case "error_field": m.errorFields = ps
                case "warnings_field": m.warningsFields = ps
                case "publish_field": m.publishFields = ps
                case "pages_items_field", "pages_total_field":
                    if m.pages == nil { m.pages = PageSpec(urlTemplate: "", itemsField: .root, totalField: nil, file: "pages.jsonl", size: 100) }
                    if key == "pages_items_field" { m.pages?.itemsField = ps.first ?? .root } else { m.pages?.totalField = ps.first }
                default: break
                }
            }
        }
        if let (e, v) = pageURL {
            if m.pages == nil { m.pages = PageSpec(urlTemplate: v, itemsField: .root, totalField: nil, file: "pages.jsonl", size: 100) }
            m.pages?.urlTemplate = v
            if byKey["pages_items_field"] == nil && m.pages?.itemsField == .root && problems.isEmpty {
                problem(e.line, "pages_items_field", "pages_url needs pages_items_field: where each page holds its list")
            }
        }
        if let pages = m.pages, pages.urlTemplate.isEmpty {
            let line = ["pages_items_field", "pages_total_field", "pages_file", "page_size"].compactMap { byKey[$0]?.first?.line }.first ?? 0
            problem(line, "pages_url", "the pages_* keys need pages_url (for example {status_url}/items?offset={offset}&limit={limit})")
        }
        let classes = [("running", m.running), ("success", m.success), ("failure", m.failure), ("partial", m.partial), ("paused", m.paused)]
        var owner: [String: String] = [:]
        for (name, list) in classes {
            for v in list {
                if let other = owner[v], !(Set([other, name]) == ["running", "paused"]) {
                    let line = byKey[name]?.first?.line ?? byKey[other]?.first?.line ?? 0
                    problem(line, name, "status value \"\(v)\" is in both \(other) and \(name)")
                }
                owner[v] = owner[v] ?? name
            }
        }
    }

    // MARK: values

    /// Expands `${env:}` and checks `${file:}`/`${credential:}` can be read.
    /// The value with its references resolved. In `.syntaxOnly` (jobfetchctl)
    /// no file is read: each secret stands in as a placeholder, as in `header`.
    private mutating func expand(_ e: Entry) -> String? {
        guard let t = template(e) else { return nil }
        if secretsMode == .syntaxOnly { return Self.placeholder(t) }
        do { return try t.resolve(secrets) } catch {
            problem(e.line, e.key, error.message); return nil
        }
    }

    private mutating func template(_ e: Entry) -> SecretTemplate? {
        var parts: [SecretTemplate.Part] = []
        var literal = ""
        var rest = Substring(e.value)
        while let open = rest.range(of: "${") {
            literal += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                problem(e.line, e.key, "\"${\" without a closing \"}\""); return nil
            }
            let ref = rest[open.upperBound..<close]
            rest = rest[rest.index(after: close)...]
            guard let colon = ref.firstIndex(of: ":") else {
                problem(e.line, e.key, "\"${\(ref)}\" should be ${env:NAME}, ${file:PATH} or ${credential:NAME}"); return nil
            }
            let scheme = String(ref[..<colon]), arg = String(ref[ref.index(after: colon)...])
            guard !arg.isEmpty else { problem(e.line, e.key, "\"${\(scheme):}\" names nothing"); return nil }
            switch scheme {
            case "env":
                if let v = environment.variables[arg] {
                    literal += v
                } else if secretsMode == .syntaxOnly {
                    literal += "env"
                } else {
                    problem(e.line, e.key, "environment variable \(arg) is not set"); return nil
                }
            case "file":
                guard arg.hasPrefix("/") else { problem(e.line, e.key, "${file:\(arg)} needs an absolute path"); return nil }
                parts.append(.literal(literal)); literal = ""
                parts.append(.file(arg))
            case "credential":
                guard KindName.problem(with: arg.replacingOccurrences(of: ".", with: "_")) == nil else {
                    problem(e.line, e.key, "credential name \(JobID.quoted(arg)) is not a plain file name"); return nil
                }
                guard let dir = environment.credentialsDirectory ?? (secretsMode == .syntaxOnly ? "/run/credentials/jobfetchd.service" : nil) else {
                    problem(e.line, e.key, "${credential:\(arg)} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"); return nil
                }
                parts.append(.literal(literal)); literal = ""
                parts.append(.file(dir + "/" + arg))
            default:
                problem(e.line, e.key, "unknown reference \"${\(scheme):…}\"", suggestion: Suggest.nearest(scheme, in: ["env", "file", "credential"]))
                return nil
            }
        }
        literal += rest
        parts.append(.literal(literal))
        return SecretTemplate(parts: parts.filter { $0 != .literal("") })
    }

    /// `t` with each secret as the word `secret`: its shape, without reading it.
    public static func placeholder(_ t: SecretTemplate) -> String {
        t.parts.map { if case .literal(let s) = $0 { s } else { "secret" } }.joined()
    }

    /// Header names that carry credentials.
    static func looksLikeCredential(_ name: String) -> Bool {
        let n = name.lowercased()
        return ["auth", "key", "token", "secret", "cookie", "password", "signature"].contains { n.contains($0) }
    }

    private mutating func header(_ e: Entry) -> SecretTemplate? {
        guard let t = template(e) else { return nil }
        let resolved: String
        switch secretsMode {
        case .resolve:
            do { resolved = try t.resolve(secrets) } catch { problem(e.line, e.key, error.message); return nil }
        case .syntaxOnly:
            // Each secret stands in as a placeholder: the header's shape is still checked.
            resolved = Self.placeholder(t)
        }
        guard let colon = resolved.firstIndex(of: ":"), colon != resolved.startIndex else {
            problem(e.line, e.key, "a header is \"Name: value\""); return nil
        }
        let name = resolved[..<colon]
        guard name.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ":") }) else {
            problem(e.line, e.key, "header name \(JobID.quoted(String(name))) is not a valid token"); return nil
        }
        guard !resolved.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
            problem(e.line, e.key, "header value contains a line break"); return nil
        }
        return t
    }

    /// `store = sqlite` or `store = postgresql://…`: the URI is kept as a
    /// template (a `${credential:}` password is read at each connection) and
    /// shown only without its password.
    private mutating func readStore(_ e: Entry, into d: inout DaemonSettings) {
        guard let t = template(e) else { return }
        let shown = Self.placeholder(t)
        if shown == "sqlite" { d.store = .sqlite; return }
        guard shown.hasPrefix("postgresql://") || shown.hasPrefix("postgres://") else {
            problem(e.line, e.key, "should be sqlite or a postgresql://… connection URI"); return
        }
        let label = Self.withoutPassword(shown)
        if case .resolve = secretsMode {
            do { _ = try t.resolve(secrets) } catch { problem(e.line, e.key, error.message); return }
        }
        if sharedFile && !t.readsFiles && label != shown {
            warnings.append(ConfigProblem(file: file, line: e.line, key: e.key, message:
                "store holds a literal password in a file readable by others than its owner; put it in ${credential:NAME} or ${file:PATH}"))
        }
        d.store = .postgresql(uri: t, label: label)
    }

    /// A connection URI with the password of its user part and any
    /// `password=` parameter shown as `mark`, or left out when it is nil.
    public static func withoutPassword(_ uri: String, mark: String? = "…") -> String {
        var s = uri
        if let scheme = s.range(of: "://") {
            let rest = s[scheme.upperBound...]
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            if let at = rest[..<authorityEnd].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
                s.replaceSubrange(colon..<at, with: mark.map { ":" + $0 } ?? "")
            }
        }
        if let q = s.firstIndex(of: "?") {
            let params = s[s.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).compactMap { p in
                p.lowercased().hasPrefix("password=") ? mark.map { "password=" + $0 } : String(p)
            }
            s = String(s[...q]) + params.joined(separator: "&")
        }
        return s
    }

    /// `on_complete`, `notify_url`, `notify_secret`, `hook_timeout` and `hook_retries` of one section.
    private mutating func readHooks(_ byKey: [String: [Entry]], insecureAllowed: Bool, inKind: Bool) -> HookSettings {
        var h = HookSettings()
        func one(_ key: String) -> Entry? { byKey[key]?.first }
        if let e = one("on_complete") {
            if e.value.contains("${") {
                // ${file:}/${credential:} would put a secret where every user sees it, and ${env:} would be split as words.
                problem(e.line, e.key, "cannot use ${…}: a program's arguments are visible to every user; let the program read its settings itself")
            } else {
                h.onComplete = command(e, e.value)
            }
        }
        if let e = one("notify_url"), let v = expand(e) {
            do {
                let u = try ParsedURL(v)
                if u.scheme == "http" && !u.isLoopback && !insecureAllowed {
                    problem(e.line, e.key, "plain http:// is refused for \(u.host); use https" +
                            (inKind ? ", or set allow_insecure_http = yes" : " (a kind's own notify_url may use it with allow_insecure_http = yes)"))
                } else {
                    h.notifyURL = u
                }
            } catch {
                // The URL itself stays out of the message: a receiver's token may be in it.
                problem(e.line, e.key, error.message.replacingOccurrences(of: v, with: "…"))
            }
        }
        if let e = one("notify_secret"), let t = template(e) {
            switch secretsMode {
            case .resolve:
                do {
                    if try t.resolve(secrets).isEmpty { problem(e.line, e.key, "is empty") } else { h.notifySecret = t }
                } catch {
                    problem(e.line, e.key, error.message)
                }
            case .syntaxOnly: h.notifySecret = t
            }
            if sharedFile && !t.readsFiles && !e.value.contains("${") {
                warnings.append(ConfigProblem(file: file, line: e.line, key: e.key, message:
                    "notify_secret is written literally in a file readable by others than its owner; put it in ${credential:NAME} or ${file:PATH}"))
            }
        }
        if let e = one("hook_timeout"), let v = expand(e), let d = duration(e, v) { h.timeout = d }
        if let e = one("hook_retries"), let v = expand(e), let n = integer(e, v, 0...100) { h.retries = n }
        return h
    }

    /// A command line split into words, as a shell would without expanding
    /// anything: blanks separate, '…' is literal, "…" and a backslash escape.
    /// The program must be an absolute path (there is no PATH search), and
    /// the daemon checks it can run it.
    private mutating func command(_ e: Entry, _ v: String) -> [String]? {
        switch CommandLineWords.split(v) {
        case .failure(let message):
            problem(e.line, e.key, message)
            return nil
        case .success(let words):
            guard let program = words.first else { problem(e.line, e.key, "names no program"); return nil }
            guard program.hasPrefix("/") else {
                problem(e.line, e.key, "\(JobID.quoted(program)) is not an absolute path (no PATH is searched)"); return nil
            }
            if secretsMode == .resolve {
                guard access(program, X_OK) == 0 else {
                    problem(e.line, e.key, "cannot run \(program): \(String(cString: strerror(errno)))"); return nil
                }
                if let why = Self.notRunnable(program) { problem(e.line, e.key, "cannot run \(program): \(why)"); return nil }
            }
            return words
        }
    }

    /// Why the kernel would refuse to exec `path` although it is executable:
    /// neither a program (ELF) nor a script whose `#!` interpreter can run. Nil when it can.
    static func notRunnable(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        let head = buffer.prefix(n)
        if head.starts(with: [0x7f, 0x45, 0x4c, 0x46]) { return nil }
        guard head.starts(with: Array("#!".utf8)) else { return "it is neither a program nor a script starting with #!" }
        let line = String(decoding: head.dropFirst(2).prefix { $0 != 0x0a }, as: UTF8.self).trimmingWhitespace()
        guard let interpreter = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init), !interpreter.isEmpty else {
            return "its #! line names no interpreter"
        }
        if access(interpreter, X_OK) != 0 { return "its interpreter \(interpreter) cannot run: \(String(cString: strerror(errno)))" }
        return nil
    }

    private mutating func checkStatusURL(_ e: Entry, _ v: String, insecureAllowed: Bool) {
        guard v.contains("{id}") else { problem(e.line, e.key, "has no {id} placeholder"); return }
        do {
            let u = try ParsedURL(v.replacingOccurrences(of: "{id}", with: "ID"))
            if u.scheme == "http" && !u.isLoopback && !insecureAllowed {
                problem(e.line, e.key, "plain http:// is refused for \(u.host); use https, or set allow_insecure_http = yes")
            }
        } catch {
            problem(e.line, e.key, error.message)
        }
    }

    private mutating func path(_ e: Entry, _ v: String) -> String? {
        guard v.hasPrefix("/") else { problem(e.line, e.key, "\"\(v)\" is not an absolute path"); return nil }
        var p = v
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    private mutating func integer(_ e: Entry, _ v: String, _ range: ClosedRange<Int>) -> Int? {
        guard let n = Int(v), range.contains(n) else {
            problem(e.line, e.key, "\"\(v)\" is not a whole number from \(range.lowerBound) to \(range.upperBound)"); return nil
        }
        return n
    }

    private mutating func size(_ e: Entry, _ v: String, allowZero: Bool = false) -> Int64? {
        guard let n = Units.size(v), allowZero || n > 0 else {
            problem(e.line, e.key, "\"\(v)\" is not a size (512, 64k, 5M, 2G)"); return nil
        }
        return n
    }

    private mutating func duration(_ e: Entry, _ v: String, allowZero: Bool = false) -> Double? {
        guard let d = Units.duration(v), allowZero || d > 0 else {
            problem(e.line, e.key, "\"\(v)\" is not a duration (500ms, 30s, 5m, 2h, 7d; at most 100 years)"); return nil
        }
        return d
    }

    private mutating func rateLimit(_ e: Entry, _ v: String) -> RateLimit? {
        let parts = v.split(separator: "/", maxSplits: 1).map { $0.trimmingWhitespace() }
        if parts.count == 2, let n = Double(parts[0]), n > 0, n.isFinite {
            let unit = parts[1]
            let per: Double? = switch unit {
            case "s": 1
            case "m": 60
            case "h": 3600
            default: Units.duration(unit)
            }
            if let per, per > 0 { return RateLimit(requests: n, per: per) }
        }
        problem(e.line, e.key, "\"\(v)\" is not a rate (10/s, 100/m, 5/2s)")
        return nil
    }
}
