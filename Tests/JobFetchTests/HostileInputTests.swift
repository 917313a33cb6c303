import Foundation
import Glibc
import Testing
import ZIPFoundation
@testable import JobFetchArtifacts
@testable import JobFetchCore
@testable import JobFetchStore

/// The units behind SPEC "Hostile input": every conversion of a number from
/// outside is total, server text is bounded and escaped, the store keeps a
/// NUL and bounds the history, zip links are never created, the crash guard
/// tells a crash from a kill, and plain http is never a downgrade.
@Suite struct HostileInputTests {
    // MARK: numbers (finding 3)

    @Test func timesFromOutsideAreTotal() {
        for t in [1e300, -1e300, .infinity, -.infinity, .nan, Double("1e400") ?? 0, Double(Int64.max)] {
            let text = Timestamp.iso8601(t)  // must not trap
            #expect(text.count == 24, "\(t) -> \(text)")
        }
        #expect(Timestamp.iso8601(-1e300) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.iso8601(1e300) == "9999-12-31T23:59:59.000Z")
        #expect(Timestamp.plausible(1_763_805_600) == 1_763_805_600)
        #expect(Timestamp.plausible(1e300) == nil)
        #expect(Units.formatDuration(.nan) == "?")
        #expect(Units.formatDuration(-1e300).hasPrefix("-"))
        #expect(Units.formatDuration(1e300).hasSuffix("d"))
    }

    @Test func presignedExpiriesOutsideAnyTimeAreNone() {
        let base = "https://bucket.example/f.csv?X-Amz-Date=20261122T100240Z&X-Amz-Signature=s&X-Amz-Expires="
        #expect(PresignedURL.expiry(base + "3600") == Timestamp.parse("2026-11-22T11:02:40Z"))
        for bad in ["-1e300", "1e400", "1e300", "nan", "inf"] {
            #expect(PresignedURL.expiry(base + bad) == nil, "\(bad)")
        }
        #expect(PresignedURL.expiry("https://cdn.example/f?Expires=1e400&Signature=x") == nil)
        #expect(PresignedURL.expiry("https://cdn.example/f?Expires=1763805600&Signature=x") == 1_763_805_600)
        #expect(PresignedURL.expiry("https://cdn.example/f?\u{301}Expires=1763805600&Signature=x") == nil, "the mark is part of the name")
        #expect(PresignedURL.expiry("https://cdn.example/f?a=\u{301}&Expires=1763805600") == 1_763_805_600, "a mark after '&' hides nothing")
    }

    @Test func anAbsurdEstimatedCompletionIsNoTime() throws {
        for value in ["1e300", "-5", "1e400", "\"1e300\""] {
            let body = Array(#"{"export_id": "e", "status": "Pending", "estimated_completion": \#(value)}"#.utf8)
            let r = StatusReader.read(body, mapping: Preset.export)
            #expect(r.notBefore == nil, "\(value)")
            #expect(r.observation == .running(progress: nil, paused: false))
        }
    }

    // MARK: found by fuzzing

    @Test func aCombiningMarkHidesNoQueryFromTheRedactors() {
        // "?" + U+0593 is one Character: a Character search missed the query (FuzzURL).
        let url = "https://h.example/r.csv?\u{593}X-Amz-Signature=SECRET"
        #expect(ParsedURL.redact(url) == "https://h.example/r.csv")
        #expect(ParsedURL.redact("https://user\u{593}@\u{301}h.example/x") == "https://\u{301}h.example/x")
        #expect(!SignatureRedactor.redactURL(url).contains("SECRET"))
        #expect(SignatureRedactor.redactURL("https://h.example/r?a=1&\u{301}sig=SECRET") == "https://h.example/r?a=1&\u{301}sig=REDACTED")
        #expect(SignatureRedactor.redactURL("https://h.example/r?token\u{301}=SECRET").hasSuffix("=REDACTED"))
    }

    @Test func aCombiningMarkHidesNoPathComponentFromTheZipChecks() {
        func safe(_ p: String) -> String? { try? ZipExtractor.safePath(p, reserved: []).get() }
        #expect(safe("../\u{301}x.txt") == nil, "a .. component")
        #expect(safe("/\u{301}etc/passwd") == nil, "an absolute path")
        #expect(safe("a/.\u{301}") == "a/.\u{301}", "a name that only starts like '.' is a name")
        #expect(safe(".\u{301}hidden") == "artifact-.\u{301}hidden")
        #expect(FileIO.parent("a/\u{301}b") == "a")
        #expect(FileIO.basename("a/\u{301}b") == "\u{301}b")
    }

    @Test func configDurationsAreBoundedAndCtlReadsNoSecretFile() throws {
        #expect(Units.duration("99999999999999999s") == nil, "milliseconds of it overflow an Int")
        #expect(Units.duration(String(repeating: "9", count: 307) + "d") == nil, "finite days, infinite seconds")
        #expect(Units.duration("36500d") == 36500.0 * 86400)
        let text = Self.config(statusURL: "https://api.example/${file:/nonexistent/secret}/{id}")
        #expect(throws: ConfigErrors.self) { try ConfigParser.parse(text, file: "t.conf") }
        let checked = try ConfigParser.parse(text, file: "t.conf", secrets: .syntaxOnly)
        #expect(checked.kind("k")?.statusURL == "https://api.example/secret/{id}")
    }

    @Test func anHTTPDateWithAFieldOutOfRangeIsNoDate() {
        #expect(HTTPDate.parse("Sun, 22 Nov 2026 10:00:00 GMT") == Timestamp.parse("2026-11-22T10:00:00Z"))
        for bad in ["Sun, 22 Nov -2147483648 10:00:00 GMT", "Sun, 99 Nov 2026 10:00:00 GMT", "Sun, 22 Nov 2026 10:00:99 GMT",
                    "Sun, 22 Nov 2147483647 10:00:00 GMT"] {
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
    }

    // MARK: server text (findings 4 and 5)

    @Test func serverTextIsEscapedForTerminalsAndLogs() {
        #expect(ServerText.escaped("plain text, ünïcödé") == "plain text, ünïcödé")
        #expect(ServerText.escaped("a\nb\rc\td") == "a\\nb\\rc\\td")
        #expect(ServerText.escaped("\u{1B}]0;title\u{07}") == "\\x1B]0;title\\x07")
        #expect(ServerText.escaped("x\u{0}y\u{7F}z") == "x\\x00y\\x7Fz")
        #expect(ServerText.escaped("\u{9B}31m") == "\\x9B31m", "C1 CSI")
        #expect(ServerText.escaped("a\u{2028}b\u{202E}c") == "a\\u{2028}b\\u{202E}c")
    }

    @Test func serverTextIsCappedAtACharacterBoundaryWithAMarker() {
        #expect(ServerText.capped("short") == "short")
        let long = String(repeating: "é", count: 1000)  // 2,000 bytes
        let cut = ServerText.capped(long)
        #expect(cut == String(repeating: "é", count: 496) + "…[1008 more bytes]", "(1024 - 32) / 2 whole characters")
        #expect(cut.utf8.count <= ServerText.maxBytes)
        #expect(ServerText.capped(cut) == cut, "cutting again changes nothing")
        let odd = ServerText.capped("a" + long)  // the cut falls inside a character
        #expect(odd.hasPrefix("a" + String(repeating: "é", count: 495) + "…[1010 more bytes]"))
    }

    @Test func aHugeStatusOrErrorListIsBoundedWhenRead() {
        let huge = String(repeating: "x", count: 4 << 20)
        let r = StatusReader.read(Array(#"{"status": "\#(huge)"}"#.utf8), mapping: Preset.dataset)
        #expect((r.apiStatus?.utf8.count ?? 0) <= ServerText.maxBytes)
        guard case .unknown(let status) = r.observation else { Issue.record("\(r.observation)"); return }
        #expect(status.utf8.count <= ServerText.maxBytes)

        let errors = (0..<10_000).map { #"{"message": "error \#($0)"}"# }.joined(separator: ",")
        let body = #"{"status": "Success", "raw_result": "x", "gql_errors": [\#(errors)]}"#
        let ok = StatusReader.read(Array(body.utf8), mapping: Preset.bulkJob)
        guard case .succeeded(_, _, let warnings) = ok.observation else { Issue.record("\(ok.observation)"); return }
        #expect(warnings.count == StatusReader.maxWarnings)
        #expect(warnings.last == "… and 9951 more warning(s), in the status document")
    }

    @Test func theStoreKeepsANulAndBoundsTextAndHistory() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let store = try JobStore(path: dir + "/s.sqlite")
        let key = JobKey(kind: "k", id: try JobID("a"))
        try store.register([key], now: 0)
        var r = try #require(try store.job(key))
        r.reason = "before\u{0}after"
        r.apiStatus = String(repeating: "s", count: 100_000)
        try store.save(r, event: "ev\u{0}ent")
        let back = try #require(try store.job(key))
        #expect(back.reason == "before\u{0}after")
        #expect((back.apiStatus?.utf8.count ?? 0) <= ServerText.maxBytes)
        #expect(try store.events(key).last?.message == "ev\u{0}ent")
        for i in 0..<(JobStore.maxEventsPerJob + 50) { try store.save(r, event: "event \(i) " + String(repeating: "e", count: 5000)) }
        let all = try store.events(key, limit: 10_000)
        #expect(all.count == JobStore.maxEventsPerJob)
        #expect(all.last?.message.hasPrefix("event \(JobStore.maxEventsPerJob + 49) ") == true)
        #expect(all.allSatisfy { $0.message.utf8.count <= ServerText.maxBytes })
    }

    // MARK: zip archives (finding 1)

    func makeZip(_ path: String, _ entries: [(name: String, link: String?, data: String)]) throws {
        let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .create)
        for e in entries {
            let bytes = Data((e.link ?? e.data).utf8)
            try archive.addEntry(with: e.name, type: e.link == nil ? (e.name.hasSuffix("/") ? .directory : .file) : .symlink,
                                 uncompressedSize: Int64(bytes.count), provider: { pos, size in bytes.subdata(in: Int(pos)..<Int(pos) + size) })
        }
    }

    @Test func linkChainsInAZipAreNeverCreatedAndNothingLandsOutside() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let job = dir + "/job"
        try FileIO.makeDirectories(job)
        try makeZip(dir + "/a.zip", [("l", ".", ""), ("l/m", "..", ""), ("l/m/n", "..", ""),
                                     ("l/m/out-1.txt", nil, "one"), ("l/m/n/out-2.txt", nil, "two"),
                                     ("abs", "/etc", ""), ("d/", nil, ""), ("d/ok.txt", nil, "ok")])
        let got = try ZipExtractor.extract(dir + "/a.zip", into: job, limit: 1 << 20, maxRatio: 1000, reserved: [])
        #expect(got.files.map(\.name) == ["l/m/out-1.txt", "l/m/n/out-2.txt", "d/ok.txt"])
        #expect(got.warnings.count == 4)
        #expect(got.warnings.allSatisfy { $0.contains("is a symbolic link") })
        #expect(try FileIO.list(dir) == ["a.zip", "job"], "nothing beside the job directory")
        #expect(try FileIO.regularFiles(under: job) == ["d/ok.txt", "l/m/n/out-2.txt", "l/m/out-1.txt"])
        var st = stat()
        #expect(lstat(job + "/l", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR, "l is a plain directory, not a link")
    }

    @Test func aLinkPlantedInTheJobDirectoryIsNotFollowed() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let job = dir + "/job"
        try FileIO.makeDirectories(job)
        try FileIO.makeDirectories(dir + "/elsewhere")
        // As if left there by anything else: the kernel refuses to cross it.
        #expect(symlink(dir + "/elsewhere", job + "/x") == 0)
        try makeZip(dir + "/b.zip", [("x/evil.txt", nil, "evil")])
        #expect(throws: ZipExtractor.Failure.self) {
            try ZipExtractor.extract(dir + "/b.zip", into: job, limit: 1 << 20, maxRatio: 1000, reserved: [])
        }
        #expect(try FileIO.list(dir + "/elsewhere").isEmpty)
    }

    // MARK: the crash guard (finding 3's class)

    @Test func theCrashGuardFailsAJobAtItsSecondCrashSinceACleanStop() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let a = JobKey(kind: "k", id: try JobID("boom"))
        let b = JobKey(kind: "k", id: try JobID("bang"))
        /// One run that dies by `signal` (0: killed unseen) while the engine
        /// handles `job` (or a worker thread of `worker` crashes), or stops cleanly.
        func run(dying signal: UInt8?, handling job: JobKey? = nil, worker: JobKey? = nil) throws -> JobKey? {
            let g = try CrashGuard(stateDir: dir)
            let offender = g.repeatOffender
            if let job { g.begin(job) }
            if let signal {
                // What the signal handler does before the process goes.
                let fd = open(dir + "/crash-guard", O_RDWR)
                defer { close(fd) }
                if let worker {
                    var slot = [UInt8](repeating: 0, count: 2) + Array(worker.description.utf8)
                    slot[0] = UInt8(worker.description.utf8.count)
                    _ = pwrite(fd, &slot, slot.count, off_t(CrashGuard.Layout.worker))
                }
                var b = signal
                if signal != 0 { _ = pwrite(fd, &b, 1, 0) }
            } else {
                if job != nil { g.end() }
                g.stoppedCleanly()
            }
            return offender
        }
        #expect(try run(dying: 4, handling: a) == nil)
        #expect(try run(dying: 4, handling: a) == nil, "once is not held against it")
        #expect(try run(dying: nil) == a, "twice: failed at the next start")
        // Two bad jobs taking turns are each caught at their second crash.
        #expect(try run(dying: 4, handling: a) == nil)
        #expect(try run(dying: 4, handling: b) == nil)
        #expect(try run(dying: 11, handling: a) == nil)
        #expect(try run(dying: 11, handling: b) == a)
        #expect(try run(dying: nil) == b)
        // A kill -9 (unseen) is held against no one; a clean stop forgives.
        #expect(try run(dying: 0, handling: a) == nil)
        #expect(try run(dying: 0, handling: a) == nil)
        #expect(try run(dying: 4, handling: a) == nil)
        #expect(try run(dying: nil) == nil)
        #expect(try run(dying: 4, handling: a) == nil)
        #expect(try run(dying: nil) == nil)
        // A worker's crash is its own job's, whatever the engine was handling.
        #expect(try run(dying: 4, handling: a, worker: b) == nil)
        #expect(try run(dying: 4, worker: b) == nil)
        #expect(try run(dying: nil) == b)
    }

    // MARK: schemes and config (finding 7)

    /// A config with one `[kind k]` of the dataset preset.
    static func config(statusURL: String, kindLines: String = "") -> String {
        """
        [daemon]
        spool_dir = /tmp/s
        state_dir = /tmp/t
        output_dir = /tmp/o
        [kind k]
        preset = dataset
        status_url = \(statusURL)
        \(kindLines)
        """
    }

    func kind(_ statusURL: String, insecure: Bool = false) throws -> KindConfig {
        let text = Self.config(statusURL: statusURL, kindLines: insecure ? "allow_insecure_http = yes" : "")
        return try #require(try ConfigParser.parse(text, file: "t.conf", secrets: .syntaxOnly).kind("k"))
    }

    @Test func plainHTTPOnLoopbackIsNoDowngradeFromHTTPS() throws {
        let local = try ParsedURL("http://127.0.0.1:8080/file.csv")
        #expect(JobMachine.insecureProblem(local, kind: try kind("http://127.0.0.1:9/v0/datasets/{id}")) == nil)
        let downgrade = try #require(JobMachine.insecureProblem(local, kind: try kind("https://api.example/v0/datasets/{id}")))
        #expect(downgrade.contains("downgrade"))
        #expect(JobMachine.insecureProblem(local, kind: try kind("https://api.example/v0/datasets/{id}", insecure: true)) == nil)
        #expect(JobMachine.insecureProblem(try ParsedURL("http://files.example/x"), kind: try kind("http://127.0.0.1:9/{id}")) != nil)
        #expect(JobMachine.insecureProblem(try ParsedURL("https://files.example/x"), kind: try kind("https://api.example/{id}")) == nil)
    }

    @Test func checkConfigWarnsOfALiteralTokenInAGroupReadableFile() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let text = Self.config(statusURL: "https://api.example/v0/datasets/{id}", kindLines: """
            header = Accept: text/csv
            header = x-api-key: abc123literal
            header = Authorization: Bearer ${env:TOKEN}
            """)
        try FileIO.writeAtomically(dir + "/open.conf", Array(text.utf8), mode: 0o640)
        let env = ConfigParser.Environment(["TOKEN": "t"])
        let open = try ConfigParser.load(path: dir + "/open.conf", environment: env)
        #expect(open.warnings.map(\.line) == [9])
        #expect(open.warnings.first?.description.contains("x-api-key holds a literal credential") == true)
        #expect(open.warnings.first?.description.contains("abc123literal") == false, "the warning never quotes the token")
        try FileIO.writeAtomically(dir + "/closed.conf", Array(text.utf8), mode: 0o600)
        #expect(try ConfigParser.load(path: dir + "/closed.conf", environment: env).warnings.isEmpty)
    }
}
