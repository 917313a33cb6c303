import Testing
@testable import JobFetchCore
@testable import JobFetchStore

@Suite struct JobStoreTests {
    /// A download's progress is committed without an fsync (WAL, `synchronous=NORMAL`
    /// for that transaction alone); every other commit stays FULL, a nested one included.
    @Test func progressCommitsWithoutWaitingForTheDiskAndOnlyIt() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let path = dir + "/s.sqlite"
        let store = try JobStore(path: path)
        func synchronous() throws(StoreError) -> Int64 {
            let s = try store.db.prepare("PRAGMA synchronous")
            _ = try s.step()
            return s.int(0)
        }
        let a = JobKey(kind: "dataset", id: try JobID("a"))
        try store.register([a], now: 0)
        #expect(try synchronous() == 2, "FULL")
        var r = try #require(try store.job(a))
        r.bytesDone = 123
        var inside: Int64 = -1
        try store.batchUnsynced { () throws(StoreError) in
            inside = try synchronous()
            try store.save(r, event: nil)
        }
        #expect(inside == 1, "NORMAL while the progress commits")
        #expect(try synchronous() == 2, "FULL again after it")
        #expect(try JobStore(path: path, readOnly: true).job(a)?.bytesDone == 123, "committed: another connection reads it")
        try store.batch { () throws(StoreError) in
            try store.batchUnsynced { () throws(StoreError) in inside = try synchronous() }
        }
        #expect(inside == 2, "inside a durable transaction the progress is as durable as it")
    }

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

    @Test func dueOrderingAndNextDueSkipClaimedJobs() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let store = try JobStore(path: dir + "/s.sqlite")
        let keys = try ["x", "y", "z"].map { JobKey(kind: "k", id: try JobID($0)) }
        try store.register(keys, now: 0)
        #expect(store.dueKeys(in: [.registered], now: 0, limit: 10).count == 3, "a new job is due at once")
        for (i, k) in keys.enumerated() {
            var r = try #require(try store.job(k))
            r.state = .polling
            r.nextAt = Double(30 - i * 10)  // z=10, y=20, x=30
            try store.save(r)
        }
        #expect(store.dueKeys(in: [.registered], now: 100, limit: 10).isEmpty)
        #expect(store.dueKeys(in: [.polling, .fetching], now: 25, limit: 10).map(\.id.rawValue) == ["z", "y"])
        #expect(store.dueKeys(in: [.polling], now: 25, limit: 10).map(\.id.rawValue) == ["z", "y"], "asking again gives the same")
        store.claim(keys[2])
        #expect(store.dueKeys(in: [.polling], now: 40, limit: 1).map(\.id.rawValue) == ["y"])
        #expect(store.dueKeys(in: [.polling], now: 40, limit: 0).isEmpty)
        #expect(store.nextDue(in: [.polling]) == 20)
        store.unclaim(keys[2])
        #expect(store.nextDue(in: [.polling]) == 10, "a claim ended puts the job back")
        #expect(store.nextDue(in: [.fetching]) == nil)
        var done = try #require(try store.job(keys[2]))
        done.state = .succeeded
        try store.save(done)
        #expect(store.nextDue(in: [.polling]) == 20, "a finished job leaves the schedule")
    }

    @Test func theScheduleIsReadBackAtOpenAndRebuiltAfterARollback() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let key = JobKey(kind: "k", id: try JobID("a"))
        do {
            let store = try JobStore(path: dir + "/s.sqlite")
            try store.register([key], now: 0)
            var r = try #require(try store.job(key))
            r.state = .fetching
            r.nextAt = 50
            try store.save(r)
        }
        let store = try JobStore(path: dir + "/s.sqlite")
        #expect(store.nextDue(in: [.fetching]) == 50)
        // A batch that fails after a save: the save is undone, and so is its schedule change.
        #expect(throws: SQLiteError.self) {
            try store.batch { () throws(SQLiteError) in
                guard var r = try store.job(key) else { throw SQLiteError(code: 1, message: "no job", context: "test") }
                r.state = .polling
                r.nextAt = 5
                try store.save(r)
                #expect(store.nextDue(in: [.polling]) == 5)
                throw SQLiteError(code: 1, message: "injected", context: "test")
            }
        }
        #expect(try store.job(key)?.state == .fetching)
        #expect(store.nextDue(in: [.polling]) == nil)
        #expect(store.nextDue(in: [.fetching]) == 50)
    }

    /// The lazy-deletion heaps against a plain list, over random saves, claims and questions.
    @Test func theScheduleAgreesWithAPlainModel() throws {
        var rng = SplitMix(seed: 42)
        var schedule = Schedule(slack: 4)
        var model: [JobKey: (state: JobState, at: Double)] = [:]
        var claimed: Set<JobKey> = []
        let keys = try (0..<40).map { JobKey(kind: $0 % 2 == 0 ? "a" : "b", id: try JobID("j\($0)")) }
        let states = JobState.allCases
        for step in 0..<20_000 {
            let key = keys[Int(rng.next() % 40)]
            let now = Double(step) / 10
            switch rng.next() % 8 {
            case 0...4:
                let state = states[Int(rng.next() % UInt64(states.count))]
                let at = now + Double(rng.next() % 10_000) / 37 - 5
                schedule.set(key, state: state, at: at)
                model[key] = state.isTerminal ? nil : (state, at)
            case 5:
                schedule.claim(key); claimed.insert(key)
            case 6:
                schedule.unclaim(key); claimed.remove(key)
            default:
                let asked: [JobState] = rng.next() % 2 == 0 ? [.registered, .polling] : [.fetching, .publishing]
                let limit = Int(rng.next() % 8)
                let open = model.filter { asked.contains($0.value.state) && !claimed.contains($0.key) }
                let expected = open.filter { $0.value.at <= now }.sorted { ($0.value.at, $0.key) < ($1.value.at, $1.key) }
                let got = schedule.due(in: asked, now: now, limit: limit)
                #expect(got.map { model[$0]!.at } == expected.prefix(limit).map(\.value.at), "step \(step)")
                #expect(schedule.nextDue(in: asked) == open.map(\.value.at).min(), "step \(step)")
            }
        }
        #expect(schedule.compactions >= 5, "the rebuild of the heaps was exercised")
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

/// A small seeded generator, so a failing sequence can be replayed.
typealias SplitMix = SplitMix64
