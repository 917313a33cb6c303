import Testing
@testable import JobFetchCore

/// The machine is a pure function: each test is a record, an event and a
/// context in, a record and effects out. No process, server or file.
@Suite struct JobMachineTests {
    static let now = 1_800_000_000.0

    static func config(_ preset: String = "dataset") throws -> Config {
        try ConfigParser.parse("""
            [daemon]
            spool_dir = /x/spool
            state_dir = /x/state
            output_dir = /x/out
            [kind k]
            preset = \(preset)
            status_url = https://api.example/v1/{id}
            header = Authorization: Bearer t
            poll_interval = 10s
            max_poll_interval = 10m
            timeout = 1d
            """, file: "test.conf", environment: .init([:]), secrets: .syntaxOnly)
    }

    static func step(_ r: JobRecord, _ e: JobEvent, at t: Double = now, jitter: Double = 0.5, preset: String = "dataset") throws -> Transition {
        let c = try config(preset)
        return JobMachine.step(r, e, MachineContext(now: t, kind: c.kind("k"), daemon: c.daemon, jitter: jitter))
    }

    static func record(_ state: JobState = .polling) throws -> JobRecord {
        JobRecord(key: JobKey(kind: "k", id: try JobID("j1")), state: state, registeredAt: now - 100)
    }

    static func answer(_ status: Int, _ body: String, headers: [String: String] = [:]) -> HTTPResponse {
        HTTPResponse(status: status, headers: headers, body: Array(body.utf8), bytesWritten: 0, error: nil, writeError: nil, bodyTooLarge: false, seconds: 0.1)
    }

    static func statusURL() throws -> ParsedURL { try ParsedURL("https://api.example/v1/j1") }

    func poll(_ r: JobRecord, _ status: Int, _ body: String, at t: Double = now, headers: [String: String] = [:]) throws -> Transition {
        try Self.step(r, .pollAnswered(url: try Self.statusURL(), hop: 0, response: Self.answer(status, body, headers: headers)), at: t)
    }

    @Test func aRunOfMalformedBodiesBacksOffFurtherEachTime() throws {
        var r = try Self.record()
        var delays: [Double] = []
        for i in 0..<4 {
            let t = Self.now + Double(i) * 1000
            let next = try poll(r, 200, "<html>gateway</html>", at: t)
            r = next.record
            #expect(r.attempts == i + 1, "a malformed body continues the run of failures")
            delays.append(r.nextAt - t)
        }
        #expect(delays == delays.sorted() && delays.first! < delays.last!, "the delay grows: \(delays)")
        // A body the mapping understands ends the run.
        r = try poll(r, 200, #"{"status": "processing"}"#).record
        #expect(r.attempts == 0 && r.lastError == nil)
    }

    @Test func retryBuildsAFreshRecordKeepingOnlyIdentityAndCount() throws {
        var r = try Self.record(.failed)
        r.retries = 2
        r.attempts = 7
        r.polls = 40
        r.reason = "boom"
        r.resultURL = "https://files.example/x"
        r.warnings = ["w"]
        r.apiStatus = "failed"
        r.outcome = .failed
        r.finishedAt = Self.now - 5
        let t = try Self.step(r, .retryRequested)
        var fresh = JobRecord(key: r.key, state: .registered, registeredAt: r.registeredAt)
        fresh.retries = 3
        fresh.timeoutFrom = Self.now
        fresh.updatedAt = Self.now
        fresh.nextAt = Self.now
        #expect(t.record == fresh)
        #expect(t.effects.contains { if case .save(let s, let e) = $0.effect { s == fresh && e == "retry 3 requested (was failed)" } else { false } })
    }

    @Test func publicationRecordsThePendingHookAndWebhookWithTheOutcomeThenHandsThemOn() throws {
        var c = try Self.config()
        var r = try Self.record(.publishing)
        r.outcome = .failed
        // Without on_complete or notify_url: nothing pending, nothing handed on.
        let plain = JobMachine.step(r, .published(path: "/x/out/k/j1", recovered: false), MachineContext(now: Self.now, kind: c.kind("k"), daemon: c.daemon, jitter: 0.5))
        #expect(plain.record.state == .failed && plain.record.hook == nil && plain.record.notify == nil)
        #expect(!plain.effects.contains { if case .deliver = $0.effect { true } else { false } })

        c.kinds[0].hooks.onComplete = ["/bin/true"]
        c.kinds[0].hooks.notifyURL = try ParsedURL("https://hooks.example/x")
        let t = JobMachine.step(r, .published(path: "/x/out/k/j1", recovered: false), MachineContext(now: Self.now, kind: c.kind("k"), daemon: c.daemon, jitter: 0.5))
        #expect(t.record.hook == .pending(at: Self.now) && t.record.notify == .pending(at: Self.now))
        // The save that records the outcome carries them; the runner hears of them after it.
        let saveAt = t.effects.firstIndex { if case .save(let s, _) = $0.effect { s.state == .failed && s.hook?.state == .pending } else { false } }
        let deliverAt = t.effects.firstIndex { if case .deliver = $0.effect { true } else { false } }
        #expect(saveAt != nil && deliverAt != nil && saveAt! < deliverAt!, "\(t.effects.map(\.effect))")

        // A retry drops what was pending for the old outcome, and says so.
        let retried = try Self.step(t.record, .retryRequested)
        #expect(retried.record.hook == nil && retried.record.notify == nil && retried.record.state == .registered)
        #expect(retried.effects.contains { if case .log(_, let m) = $0.effect { m.contains("on_complete and notify_url will not run again") } else { false } })
    }

    @Test func retryOfAJobThatHasNotEndedChangesNothingButSaysSo() throws {
        let r = try Self.record(.fetching)
        let t = try Self.step(r, .retryRequested)
        #expect(t.record.state == .fetching)
        #expect(!t.effects.contains { if case .start = $0.effect { true } else { false } })
    }

    @Test func cancelStopsTheRequestClearsStagingAndPublishesCancelled() throws {
        let r = try Self.record(.fetching)
        let t = try Self.step(r, .cancelRequested(inFlight: "download of https://files.example/x"))
        let kinds = t.effects.map { "\($0.effect)".prefix(while: { $0 != "(" }) }
        #expect(kinds.first == "abort")
        #expect(kinds.contains("clearStaging"))
        guard case .publish(let published)? = t.effects.last?.effect else { Issue.record("no publish: \(kinds)"); return }
        #expect(published.state == .publishing && published.outcome == .cancelled)
        #expect(published.reason == "cancelled by the operator while fetching (download of https://files.example/x stopped)")
    }

    @Test func successStagesTheDocumentsThenFetchesWithoutCredentialsOffOrigin() throws {
        let r = try Self.record()
        let t = try poll(r, 200, #"{"status": "completed", "csv_url": "https://files.example/out.csv"}"#)
        #expect(t.record.state == .fetching && t.record.nextAt == Self.now)
        #expect(t.effects.contains { if case .stage = $0.effect { true } else { false } })
        // The fetch it leads to carries no credentials to another origin.
        let due = try Self.step(t.record, .due(DueFacts(freeSpace: 1 << 40)))
        guard case .start(let request)? = due.effects.last?.effect else { Issue.record("no start"); return }
        #expect(request.purpose == .transfer && !request.credentials && request.url.host == "files.example")
    }

    @Test func aRedirectHopIsARequestOfItsOwnWithCredentialsOnlyOnTheOrigin() throws {
        let r = try Self.record()
        for (location, credentials) in [("https://api.example/v2/j1", true), ("https://mirror.example/v1/j1", false)] {
            let t = try poll(r, 302, "", headers: ["location": location])
            guard case .start(let request)? = t.effects.last?.effect else { Issue.record("no start for \(location)"); continue }
            #expect(request.hop == 1 && request.credentials == credentials && request.takesToken, "\(location)")
            #expect(t.record.polls == 0, "a redirect is part of the same poll")
        }
    }

    @Test func aFailedEffectHandsBackTheRecordAsPlanned() throws {
        let r = try Self.record()
        let t = try poll(r, 200, #"{"status": "completed", "csv_url": "https://files.example/out.csv"}"#)
        guard let stage = t.effects.first(where: { if case .stage = $0.effect { true } else { false } }) else { Issue.record("no stage"); return }
        // The staging directory cannot be written: the job stays polling and backs off.
        let failed = try Self.step(stage.record, .effectFailed(stage.effect, problem: "No space left on device"))
        #expect(failed.record.state == .polling && failed.record.attempts == 1)
        #expect(failed.record.lastError == "cannot write the result into the staging directory: No space left on device")
    }

    @Test func retryAfterIsHonouredButNeverPastTheTimeout() throws {
        var r = try Self.record()
        r.timeoutFrom = Self.now - 86400 + 30  // 30 s of the day left
        let t = try poll(r, 429, "{}", headers: ["retry-after": "3600"])
        #expect(t.record.nextAt == Self.now + 31, "parked at the timeout (+1 s), not an hour on")
    }

    @Test func everyStateChangeIsAnEdgeOfTheDiagram() {
        // The diagram in the README, as data: terminal states are left only by a retry.
        for e in JobState.edges where e.from.isTerminal { #expect(e.to == .registered, "\(e)") }
        for s in JobState.allCases where s.isTerminal { #expect(JobState.edges.contains(JobState.Edge(.publishing, s))) }
    }
}
