import Testing
@testable import JobFetch

@Suite struct JobStoreTests {
    @Test func registerIsIdempotentAndOneTransaction() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let store = try JobStore(path: dir + "/s.sqlite")
        let a = JobKey(kind: "dataset", id: try JobID("a"))
        let b = JobKey(kind: "dataset", id: try JobID("b"))
        #expect(try store.register([a, b], now: 100) == [a, b])
        var r = try #require(try store.job(a))
        r.state = .succeeded
        try store.save(r, event: "done")
        #expect(try store.register([a, b], now: 200).isEmpty)
        #expect(try store.job(a)?.state == .succeeded, "registering again must not reset a finished job")
        #expect(try store.job(a)?.registeredAt == 100)
        #expect(try store.events(a).map(\.message) == ["registered", "done"])
    }

    @Test func dueOrderingAndNextDueSkipBusyJobs() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let store = try JobStore(path: dir + "/s.sqlite")
        let keys = try ["x", "y", "z"].map { JobKey(kind: "k", id: try JobID($0)) }
        try store.register(keys, now: 0)
        for (i, k) in keys.enumerated() {
            var r = try #require(try store.job(k))
            r.state = .polling
            r.nextAt = Double(30 - i * 10)  // z=10, y=20, x=30
            try store.save(r)
        }
        #expect(try store.due(in: [.polling], now: 25, limit: 10).map(\.key.id.rawValue) == ["z", "y"])
        #expect(try store.dueKeys(in: [.polling, .fetching], now: 25, limit: 10, excluding: []).map(\.id.rawValue) == ["z", "y"])
        #expect(try store.dueKeys(in: [.polling], now: 40, limit: 1, excluding: [keys[2]]).map(\.id.rawValue) == ["y"])
        #expect(try store.dueKeys(in: [.polling], now: 40, limit: 0, excluding: []).isEmpty)
        #expect(try store.nextDue(in: [.polling], excluding: []) == 10)
        #expect(try store.nextDue(in: [.polling], excluding: [keys[2]]) == 20)
        #expect(try store.nextDue(in: [.fetching], excluding: []) == nil)
    }

    @Test func recordRoundTripsEveryField() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let store = try JobStore(path: dir + "/s.sqlite")
        let k = JobKey(kind: "k", id: try JobID("j"))
        try store.register([k], now: 1)
        var r = try #require(try store.job(k))
        r.state = .publishing; r.updatedAt = 2; r.nextAt = 3; r.attempts = 4; r.polls = 5; r.lastHTTPStatus = 503
        r.lastError = "e"; r.lastStatus = "{\"s\":1}"; r.apiStatus = "done"; r.progress = 0.5; r.bytesDone = 6
        r.bytesTotal = 7; r.resultURL = "https://h/x?sig=1"; r.reason = "why"; r.warnings = ["w1", "w\"2"]
        r.finishedAt = 8; r.notFoundSince = 9; r.outcome = .failed
        r.summary = #"{"results":{"errors":1}}"#; r.pageNext = 200; r.timeoutFrom = 10; r.retries = 2
        try store.save(r)
        #expect(try store.job(k) == r)
    }

    @Test func readOnlyOpenSeesTheDaemonsWrites() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let writer = try JobStore(path: dir + "/s.sqlite")
        try writer.register([JobKey(kind: "k", id: try JobID("j"))], now: 1)
        let reader = try JobStore(path: dir + "/s.sqlite", readOnly: true)
        #expect(try reader.list().count == 1)
        #expect(throws: SQLiteError.self) { try reader.register([JobKey(kind: "k", id: try JobID("n"))], now: 2) }
    }

    @Test func aVersion1DatabaseIsMigratedKeepingItsJobs() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let path = dir + "/s.sqlite"
        do {
            // The schema as the first release wrote it, with one job in it.
            let db = try SQLiteDatabase(path: path, readOnly: false)
            try db.execute(JobStore.migrations[0])
            try db.execute("PRAGMA user_version = 1")
            try db.execute("INSERT INTO jobs (kind, id, state, registered_at, updated_at, next_at, reason) VALUES ('k', 'old', 'failed', 1, 2, 3, 'why')")
        }
        let store = try JobStore(path: path)
        #expect(try store.userVersion() == JobStore.schemaVersion)
        let r = try #require(try store.job(JobKey(kind: "k", id: try JobID("old"))))
        #expect(r.state == .failed)
        #expect(r.reason == "why")
        #expect(r.retries == 0)
        #expect(r.timeoutFrom == nil)
        #expect(r.clockStart == 1)
    }

    @Test func aNewerSchemaIsRefused() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let db = try SQLiteDatabase(path: dir + "/s.sqlite", readOnly: false)
        try db.execute("PRAGMA user_version = 99")
        #expect(throws: SQLiteError.self) { try JobStore(path: dir + "/s.sqlite") }
    }
}

@Suite struct JobReportTests {
    @Test func tableColoursStatesOnlyWhenAsked() throws {
        var r = JobRecord(key: JobKey(kind: "k", id: try JobID("a")), state: .failed, registeredAt: 0)
        r.reason = "why"
        #expect(JobReport.table([r], now: 10, colour: true).contains("\u{1B}[31mfailed\u{1B}[0m"))
        #expect(!JobReport.table([r], now: 10).contains("\u{1B}["))
    }

    @Test func etaFromRateAndRemainingBytes() throws {
        var r = JobRecord(key: JobKey(kind: "k", id: try JobID("a")), state: .fetching, registeredAt: 0)
        r.bytesDone = 1000
        r.bytesTotal = 5000
        r.rate = 400
        #expect(JobReport.eta(r) == 10)
        r.state = .succeeded
        #expect(JobReport.eta(r) == nil)
    }
}
