import Foundation
import Glibc
import Testing
@testable import JobFetchCore

@Suite struct ConfigParserTests {
    let env = ConfigParser.Environment(["API_HOST": "api.qoery.com", "CREDENTIALS_DIRECTORY": "/nonexistent-creds"])

    func problems(_ text: String, env: ConfigParser.Environment? = nil) -> [ConfigProblem] {
        do {
            _ = try ConfigParser.parse(text, file: "daemon.conf", environment: env ?? self.env)
            return []
        } catch {
            return error.problems
        }
    }

    static let good = """
        # production sample
        [daemon]
        spool_dir     = /var/spool/jobfetchd
        state_dir     = /var/lib/jobfetchd          # SQLite state database lives here
        output_dir    = /srv/results/
        max_downloads = 6
        max_polls     = 16
        log_level     = notice
        max_artifact_size = 2G
        min_free_space = 512M

        ; a dataset API
        [kind dataset]
        preset        = dataset
        status_url    = https://${env:API_HOST}/v0/datasets/{id}
        header        = x-api-key: literal-key
        header        = X-Trace: on
        poll_interval = 500ms
        max_poll_interval = 5m
        timeout       = 7d
        rate_limit    = 10/s
        not_found_grace = 2m
        """

    @Test func retentionIsOffByDefaultAndForgetsOnlyAfterRemoving() throws {
        #expect(try ConfigParser.parse(Self.good, file: "daemon.conf", environment: env).daemon.keepResults == nil)
        let on = Self.good.replacingOccurrences(of: "min_free_space = 512M", with: "min_free_space = 512M\nkeep_results = 30d\nforget_after = 90d")
        let c = try ConfigParser.parse(on, file: "daemon.conf", environment: env)
        #expect(c.daemon.keepResults == 30 * 86400 && c.daemon.forgetAfter == 90 * 86400)
        let bad = problems(Self.good.replacingOccurrences(of: "min_free_space = 512M", with: "min_free_space = 512M\nkeep_results = 30d\nforget_after = 1d"))
        #expect(bad.count == 1 && bad.first?.description.contains("forget_after: must be at least keep_results (30d)") == true, "\(bad)")
    }

    @Test func segmentsAreSetForTheDaemonAndPerKindAndBounded() throws {
        let text = Self.good.replacingOccurrences(of: "min_free_space = 512M", with: "min_free_space = 512M\nsegments = 8\nsegment_min_size = 16M\nsegment_below_rate = 30M")
            + "\nsegments = 1\n"
        let c = try ConfigParser.parse(text, file: "daemon.conf", environment: env)
        #expect(c.daemon.segments == 8 && c.daemon.segmentMinSize == 16 << 20 && c.daemon.segmentBelowRate == 30 << 20)
        #expect(c.kind("dataset")?.segments == 1)
        let d = try ConfigParser.parse(Self.good, file: "daemon.conf", environment: env)
        #expect(d.daemon.segments == 4 && d.daemon.segmentMinSize == 64 << 20 && d.daemon.segmentBelowRate == 100 << 20 && d.kind("dataset")?.segments == nil)
        let bad = problems(Self.good + "\nsegments = 17\n")
        #expect(bad.map(\.description) == ["daemon.conf:23: segments: \"17\" is not a whole number from 1 to 16"], "\(bad)")
    }

    @Test func readsAGoodFile() throws {
        let c = try ConfigParser.parse(Self.good, file: "daemon.conf", environment: env)
        #expect(c.daemon.spoolDir == "/var/spool/jobfetchd")
        #expect(c.daemon.outputDir == "/srv/results")
        #expect(c.daemon.maxDownloads == 6)
        #expect(c.daemon.maxPolls == 16)
        #expect(c.daemon.logLevel == .notice)
        #expect(c.daemon.maxArtifactSize == 2 << 30)
        #expect(c.daemon.minFreeSpace == 512 << 20)
        let k = try #require(c.kind("dataset"))
        #expect(k.statusURL == "https://api.qoery.com/v0/datasets/{id}")
        #expect(try k.statusURL(for: JobID("ab:c")).text == "https://api.qoery.com/v0/datasets/ab:c")
        #expect(k.headers.count == 2)
        #expect(try k.headers[0].resolve(SecretFileCache()) == "x-api-key: literal-key")
        #expect(k.pollInterval == 0.5)
        #expect(k.maxPollInterval == 300)
        #expect(k.timeout == 7 * 86400)
        #expect(k.notFoundGrace == 120)
        #expect(k.rateLimit == RateLimit(requests: 10, per: 1))
        #expect(k.mapping == Preset.dataset)
    }

    @Test func misspeltKeyNamesFileLineKeyAndSuggestion() {
        let p = problems(Self.good.replacingOccurrences(of: "poll_interval = 500ms", with: "pol_interval = 500ms"))
        #expect(p.count == 1)
        #expect(p[0].line == 18)
        #expect(p[0].key == "pol_interval")
        #expect(p[0].suggestion == "poll_interval")
        #expect(p[0].description == "daemon.conf:18: pol_interval: unknown key in [kind dataset]; did you mean \"poll_interval\"?")
    }

    @Test func keyInTheWrongSectionSaysWhereItBelongs() {
        let p = problems("[daemon]\npoll_interval = 5s\n[kind a]\npreset = dataset\nstatus_url = https://x/{id}\n")
        #expect(p.count == 1)
        #expect(p[0].line == 2)
        #expect(p[0].message.contains("belongs in a [kind NAME] section"))
    }

    @Test func everyKindOfErrorIsReportedWithItsLine() {
        let text = """
            [daemon]
            spool_dir = relative/path
            max_polls = lots
            log_level = verbose
            max_artifact_size = 5Q
            [kind one]
            preset = datset
            status_url = http://api.example.com/{id}
            poll_interval = 5 minutes
            header = no colon here
            rate_limit = fast
            timeout = 1h
            timeout = 2h
            [kinds two]
            [kind three]
            preset = dataset
            status_url = https://example.com/fixed
            header = x-key: ${env:MISSING_VAR}
            header = x-key: ${file:/nonexistent/secret}
            header = x-key: ${credential:qoery-key}
            this line is nonsense
            """
        let p = problems(text)
        let byLine = Dictionary(grouping: p, by: \.line)
        #expect(byLine[2]?.first?.message.contains("not an absolute path") == true)
        #expect(byLine[3]?.first?.message.contains("whole number") == true)
        #expect(byLine[4]?.first?.message.contains("not a log level") == true)
        #expect(byLine[5]?.first?.message.contains("not a size") == true)
        #expect(byLine[7]?.first?.suggestion == "dataset")
        #expect(byLine[8]?.first?.message.contains("plain http:// is refused") == true)
        #expect(byLine[9]?.first?.message.contains("not a duration") == true)
        #expect(byLine[10]?.first?.message.contains("Name: value") == true)
        #expect(byLine[11]?.first?.message.contains("not a rate") == true)
        #expect(byLine[13]?.first?.message.contains("given twice") == true)
        #expect(byLine[14]?.first?.suggestion == "kind two")
        #expect(byLine[17]?.first?.message.contains("{id}") == true)
        #expect(byLine[18]?.first?.message.contains("MISSING_VAR") == true)
        #expect(byLine[19]?.first?.message.contains("/nonexistent/secret") == true)
        #expect(byLine[20]?.first?.message.contains("/nonexistent-creds/qoery-key") == true)
        #expect(byLine[21]?.first?.message.contains("key = value") == true)
        #expect(p.allSatisfy { $0.file == "daemon.conf" })
    }

    @Test func loopbackHTTPIsAllowedAndOthersNeedOptIn() throws {
        let ok = "[kind a]\npreset = dataset\nstatus_url = http://127.0.0.1:8080/{id}\n"
        #expect(problems(ok).isEmpty)
        let optIn = "[kind a]\npreset = dataset\nallow_insecure_http = yes\nstatus_url = http://intranet.example/{id}\n"
        #expect(problems(optIn).isEmpty)
    }

    @Test func customKindMustSetItsMapping() {
        let p = problems("[kind x]\npreset = custom\nstatus_url = https://h/{id}\nstatus_field = /state\n")
        #expect(p.count == 1)
        #expect(p[0].message.contains("success, failure"))
        let full = "[kind x]\npreset = custom\nstatus_url = https://h/{id}\nstatus_field = /state\nsuccess = DONE\nfailure = BAD\nrunning = WAIT, queued\nerror_field = /why, /detail\n"
        #expect(problems(full).isEmpty)
        let overlap = full + "failure = DONE\n"
        #expect(problems(overlap).contains { $0.message.contains("given twice") })
    }

    @Test func everyMappingKeyIsSettableAndChecked() throws {
        let text = """
            [kind tasks]
            preset = custom
            status_url = https://h/api/tasks/{id}?tenant=7
            unwrap = /data/task
            status_field = /state
            running = Working, In Queue
            paused = ON_HOLD
            success = done
            partial = DONE_WITH_ERRORS
            failure = broken
            result_url_field = /output/href
            inline_result_field = /output/inline
            error_field = /problem/text, /problem/code
            failure_time_field = /problem/at
            warnings_field = /notes
            progress_field = /percent
            summary_field = /counts
            summary_warn = skipped, failed
            next_poll_field = /eta
            publish_field = /output, /meta
            pages_url = {status_url}/items?from={offset}&count={limit}
            pages_items_field = /items
            pages_total_field = /total
            pages_file = items.jsonl
            page_size = 500

            [kind export]
            preset = export
            status_url = https://h/export/{id}/status
            result_url_field = /download_url
            """
        let config = try ConfigParser.parse(text, file: "daemon.conf", environment: env)
        let m = try #require(config.kind("tasks")).mapping
        #expect(m.running == ["working", "inqueue"])
        #expect(m.paused == ["onhold"])
        #expect(m.partial == ["donewitherrors"])
        #expect(m.errorFields.map(\.description) == ["/problem/text", "/problem/code"])
        #expect(m.failureTimeField?.description == "/problem/at")
        #expect(m.summaryWarn == ["skipped", "failed"])
        #expect(m.nextPollField?.description == "/eta")
        #expect(m.publishFields.map(\.description) == ["/output", "/meta"])
        #expect(m.pages == PageSpec(urlTemplate: "{status_url}/items?from={offset}&count={limit}", itemsField: try JSONPointer("/items"),
                                    totalField: try JSONPointer("/total"), file: "items.jsonl", size: 500))
        // A preset key overridden, the rest kept.
        let export = try #require(config.kind("export")).mapping
        #expect(export.resultURLField?.description == "/download_url")
        #expect(export.summaryField == Preset.export.summaryField)

        let base = "[kind t]\npreset = custom\nstatus_url = https://h/{id}\nstatus_field = /s\nsuccess = ok\nfailure = bad\n"
        #expect(problems(base + "pages_url = https://h/items\npages_items_field = /items\n").contains { $0.key == "pages_url" && $0.message.contains("{offset}") })
        #expect(problems(base + "pages_url = https://h/items?o={offset}\n").contains { $0.key == "pages_items_field" })
        #expect(problems(base + "pages_file = ../x\npages_url = {status_url}?o={offset}\npages_items_field = /i\n").contains { $0.message.contains("not a plain file name") })
        #expect(problems(base + "page_size = 0\n").contains { $0.key == "page_size" })
        #expect(problems(base + "partial = OK\n").contains { $0.message == "status value \"ok\" is in both success and partial" })
        #expect(problems(base + "next_poll_field = eta\n").contains { $0.key == "next_poll_field" && $0.message.contains("start with \"/\"") })
        let misspelt = problems(base + "summary_feild = /x\n")
        #expect(misspelt.first?.suggestion == "summary_field")
        let preset = problems("[kind b]\npreset = bulkjob\nstatus_url = https://h/{id}\n")
        #expect(preset.first?.suggestion == "bulk-job")
    }

    @Test func fileSecretsAreReadAtUseAndRereadWhenTheyChange() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        try write(dir + "/token", "first-token\n")
        let text = "[kind a]\npreset = dataset\nstatus_url = https://h/{id}\nheader = Authorization: Bearer ${file:\(dir)/token}\n"
        let c = try ConfigParser.parse(text, file: "daemon.conf", environment: env)
        let cache = SecretFileCache()
        let header = try #require(c.kinds.first?.headers.first)
        #expect(try header.resolve(cache) == "Authorization: Bearer first-token")
        try write(dir + "/token", "rotated-token-longer\n")
        #expect(try header.resolve(cache) == "Authorization: Bearer rotated-token-longer")
    }

    @Test func credentialsComeFromTheCredentialsDirectory() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        try write(dir + "/qoery-key", "s3cret")
        let text = "[kind a]\npreset = dataset\nstatus_url = https://h/{id}\nheader = x-api-key: ${credential:qoery-key}\n"
        let c = try ConfigParser.parse(text, file: "f", environment: .init(["CREDENTIALS_DIRECTORY": dir]))
        #expect(try c.kinds[0].headers[0].resolve(SecretFileCache()) == "x-api-key: s3cret")
    }

    /// jobfetchctl reads the same file outside the service: no credentials
    /// directory, no access to the secret files, an environment without the
    /// unit's variables. It checks the references' syntax and the headers'
    /// shape, and reads no secret.
    @Test func syntaxOnlyNeedsNoSecretButStillChecksShapes() throws {
        let text = """
            [kind a]
            preset = dataset
            status_url = https://h/{id}
            header = x-api-key: ${credential:qoery-key}
            header = Authorization: Bearer ${file:/nonexistent/token}
            header = x-other: ${env:JOBFETCH_TEST_UNSET_VARIABLE}
            """
        #expect(throws: ConfigErrors.self) { try ConfigParser.parse(text, file: "f", environment: .init([:])) }
        let c = try ConfigParser.parse(text, file: "f", environment: .init([:]), secrets: .syntaxOnly)
        #expect(c.kinds[0].headers.count == 3)
        let bad = "[kind a]\npreset = dataset\nstatus_url = https://h/{id}\nheader = ${credential:k}\nheader = x: ${nope:k}\n"
        do {
            _ = try ConfigParser.parse(bad, file: "f", environment: .init([:]), secrets: .syntaxOnly)
            Issue.record("a header without a name and an unknown reference must be refused")
        } catch {
            #expect(error.problems.count == 2)
            #expect(error.description.contains("a header is \"Name: value\""))
        }
    }

    @Test func errorsNeverContainSecretValues() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        try write(dir + "/token", "TOPSECRET\nsecond line")
        let text = "[kind a]\npreset = dataset\nstatus_url = https://h/{id}\nheader = x-api-key: ${file:\(dir)/token}\n"
        let p = problems(text)
        #expect(p.count == 1)
        #expect(!p[0].description.contains("TOPSECRET"))
    }

    @Test func durationsAndSizes() {
        #expect(Units.duration("500ms") == 0.5)
        #expect(Units.duration("30s") == 30)
        #expect(Units.duration("5m") == 300)
        #expect(Units.duration("2h") == 7200)
        #expect(Units.duration("7d") == 604800)
        #expect(Units.duration("5") == nil)
        #expect(Units.duration("-5s") == nil)
        #expect(Units.duration("ms") == nil)
        #expect(Units.size("512") == 512)
        #expect(Units.size("64k") == 65536)
        #expect(Units.size("5M") == 5 << 20)
        #expect(Units.size("2G") == 2 << 30)
        #expect(Units.size("9999999999999G") == nil)
        #expect(Units.size("1.5G") == nil)
    }

    @Test func noKindIsAnError() {
        let p = problems("[daemon]\nlog_level = info\n")
        #expect(p.count == 1)
        #expect(p[0].message.contains("no [kind NAME]"))
    }
}

@Suite struct ShippedFilesTests {
    @Test func theSampleDaemonConfIsValid() throws {
        let creds = makeTempDir()
        defer { try? FileIO.removeTree(creds) }
        try write(creds + "/qoery-key", "k")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let c = try ConfigParser.load(path: root + "/daemon.conf", environment: .init(["CREDENTIALS_DIRECTORY": creds]))
        #expect(c.kinds.map(\.name) == ["dataset"])
        #expect(c.daemon.spoolDir == "/var/spool/jobfetchd")
    }
}

@Suite struct HookConfigTests {
    let env = ConfigParser.Environment([:])
    static let secret: String = {
        let path = NSTemporaryDirectory() + "/jf-notify-secret-\(getpid())"
        try? FileIO.writeAtomically(path, Array("k3y\n".utf8))
        return path
    }()

    func parse(daemon: String = "", kind: String = "") throws(ConfigErrors) -> Config {
        try ConfigParser.parse("""
            [daemon]
            spool_dir = /x/spool
            state_dir = /x/state
            output_dir = /x/out
            \(daemon)
            [kind k]
            preset = dataset
            status_url = https://api.example/v1/{id}
            \(kind)
            """, file: "daemon.conf", environment: env)
    }

    func problems(daemon: String = "", kind: String = "") -> [String] {
        do { _ = try parse(daemon: daemon, kind: kind); return [] } catch { return error.problems.map(\.description) }
    }

    @Test func hooksAreOffByDefault() throws {
        let c = try parse()
        let h = try #require(c.kind("k")).hooks
        #expect(h.onComplete == nil && h.notifyURL == nil && h.hookTimeout == 300 && h.hookRetries == 3 && c.daemon.maxHooks == 2)
    }

    @Test func daemonHooksServeEveryKindAndAKindsOwnKeysWin() throws {
        let c = try parse(daemon: """
            on_complete = /bin/echo 'a b' "c \\" d" e\\ f
            hook_timeout = 30s
            max_hooks = 3
            notify_url = https://hooks.example/jobs
            notify_secret = ${file:\(Self.secret)}
            """, kind: "hook_retries = 5\non_complete = /bin/true")
        let h = try #require(c.kind("k")).hooks
        #expect(h.onComplete == ["/bin/true"] && c.daemon.hooks.onComplete == ["/bin/echo", "a b", "c \" d", "e f"])
        #expect(h.hookTimeout == 30 && h.hookRetries == 5 && h.notifyURL?.host == "hooks.example" && h.notifySecret != nil)
        #expect(c.daemon.maxHooks == 3)
    }

    @Test func badHookLinesAreNamed() {
        #expect(problems(daemon: "on_complete = echo hi") == ["daemon.conf:5: on_complete: \"echo\" is not an absolute path (no PATH is searched)"])
        #expect(problems(daemon: "on_complete = /nonexistent/load-csv") == ["daemon.conf:5: on_complete: cannot run /nonexistent/load-csv: No such file or directory"])
        #expect(problems(daemon: "on_complete = /bin/echo 'open") == ["daemon.conf:5: on_complete: a ' quote is not closed"])
        // Executable but not runnable: no #! line, or an interpreter that is not there.
        let dir = NSTemporaryDirectory() + "/jf-hook-\(getpid())"
        try? FileIO.makeDirectories(dir)
        try? FileIO.writeAtomically(dir + "/plain", Array("echo hi\n".utf8))
        try? FileIO.writeAtomically(dir + "/nointerp", Array("#!/nonexistent/sh\necho hi\n".utf8))
        try? FileIO.writeAtomically(dir + "/good", Array("#!/bin/sh\necho hi\n".utf8))
        for f in ["plain", "nointerp", "good"] { chmod(dir + "/" + f, 0o755) }
        #expect(problems(daemon: "on_complete = \(dir)/plain") == ["daemon.conf:5: on_complete: cannot run \(dir)/plain: it is neither a program nor a script starting with #!"])
        #expect(problems(daemon: "on_complete = \(dir)/nointerp") == ["daemon.conf:5: on_complete: cannot run \(dir)/nointerp: its interpreter /nonexistent/sh cannot run: No such file or directory"])
        #expect(problems(daemon: "on_complete = \(dir)/good").isEmpty)
        #expect(problems(daemon: "notify_url = http://127.0.0.1:99999/h/TOKEN\nnotify_secret = s").allSatisfy { !$0.contains("TOKEN") })
        #expect(problems(daemon: "on_complete = /bin/echo ${file:\(Self.secret)}").first?.contains("cannot use ${…}: a program's arguments are visible") == true)
        #expect(problems(daemon: "on_complete = /bin/echo ${env:HOME}").first?.contains("cannot use ${…}") == true)
        #expect(problems(daemon: "notify_url = http://hooks.example/x\nnotify_secret = s").first?.contains("(a kind's own notify_url may use it with allow_insecure_http = yes)") == true)
        #expect(problems(kind: "notify_url = https://hooks.example/x") == ["daemon.conf:6: notify_secret: [kind k] has a notify_url but no notify_secret to sign its deliveries with"])
        #expect(problems(kind: "notify_url = http://hooks.example/x\nnotify_secret = s").first?.contains("plain http:// is refused for hooks.example") == true)
        #expect(problems(daemon: "max_hooks = 0") == ["daemon.conf:5: max_hooks: \"0\" is not a whole number from 1 to 64"])
        #expect(problems(kind: "max_hooks = 2").first?.contains("unknown key in [kind k] (it belongs in [daemon])") == true)
    }

    @Test func commandLinesSplitAsAShellSplitsWordsAndNoMore() {
        #expect(CommandLineWords.split("/bin/x  a\t'b c' \"d \\\"e\\\\\" f\\ g 'h\"' \"$HOME\" *") ==
                .success(["/bin/x", "a", "b c", "d \"e\\", "f g", "h\"", "$HOME", "*"]))
        #expect(CommandLineWords.split("/bin/x ''") == .success(["/bin/x", ""]))
        #expect(CommandLineWords.split("/bin/x \"a") == .failure("a \" quote is not closed"))
        #expect(CommandLineWords.split("/bin/x a\\") == .failure("ends with a lone backslash"))
        #expect(CommandLineWords.split("   ") == .success([]))
    }
}
