import Glibc
import Testing
import TestSupport
@testable import JobFetchCore
@testable import JobFetchStore

/// The PostgreSQL store against a real, throwaway cluster: claims that
/// exclude each other, leases that run out and are taken over, writes and
/// publication fenced by the lease token, the schema and its refusal.
@Suite(.serialized) struct PostgresStoreTests {
    /// A cluster of each test's own (initdb takes about a second), stopped with it.
    let server: PostgresServer?

    init() throws {
        server = PostgresServer.unavailable == nil ? try PostgresServer() : nil
    }

    func open(_ node: String, lease: Double = 30) throws -> PostgresStore {
        let server = try #require(server, "\(PostgresServer.unavailable ?? "the throwaway PostgreSQL did not start")")
        return try PostgresStore(conninfo: server.uri, label: "test", node: node, lease: lease)
    }

    func keys(_ prefix: String, _ n: Int) throws -> [JobKey] {
        try (0..<n).map { JobKey(kind: "dataset", id: try JobID("\(prefix)-\($0)")) }
    }

    /// Runs the test only where a cluster can be made, else says why (CI installs PostgreSQL, so it always runs there).
    func available() -> Bool {
        if let why = PostgresServer.unavailable { print("skipping: \(why)"); return false }
        return true
    }

    /// Progress commits with `synchronous_commit` off for its own transaction; the next is as durable as ever.
    @Test func progressCommitsWithoutWaitingForTheWALAndOnlyIt() throws {
        guard available() else { return }
        let a = try open("node-a")
        let k = try keys("progress", 1)[0]
        try a.register([k], now: SystemClock.now())
        a.claim(k)
        var r = try #require(try a.job(k))
        r.bytesDone = 321
        var inside: String?
        try a.batchUnsynced { () throws(StoreError) in
            inside = try a.pg.exec("SHOW synchronous_commit").rows.first?.text(0)
            try a.save(r, event: nil)
        }
        #expect(inside == "off")
        #expect(try a.pg.exec("SHOW synchronous_commit").rows.first?.text(0) == "on")
        #expect(try open("node-b").job(k)?.bytesDone == 321, "committed: another node reads it")
    }

    @Test func claimsExcludeEachOtherAndALapsedLeaseIsTakenOver() throws {
        guard available() else { return }
        let a = try open("node-a"), b = try open("node-b")
        let now = SystemClock.now()
        let ks = try keys("claim", 10)
        #expect(try a.register(ks, now: now).count == 10)
        #expect(try b.register(ks, now: now).isEmpty, "registering on another node adds nothing")
        let mine = a.dueKeys(in: [.registered], now: now + 1, limit: 6)
        #expect(mine.count == 6)
        for k in mine { a.claim(k) }
        let theirs = b.dueKeys(in: [.registered], now: now + 1, limit: 10)
        #expect(theirs.count == 4 && Set(theirs).isDisjoint(with: mine))
        #expect(b.dueKeys(in: [.registered], now: now + 1, limit: 10).isEmpty, "a held job is nobody else's")
        #expect(try b.job(mine[0])?.node == "node-a")

        // A's save of its own job goes through; B's of A's job is refused, naming A.
        var r = try #require(try a.job(mine[0]))
        r.polls = 7
        try a.save(r, event: "polled")
        r.polls = 8
        #expect(throws: StoreError.self) { try b.save(r, event: nil) }
        do { try b.save(r, event: nil) } catch { #expect(error.leaseLost && error.message.contains("node node-a holds it"), "\(error)") }
        #expect(try a.job(mine[0])?.polls == 7)

        // A is paused past its leases (the database's clock says they ran out): B takes the jobs over…
        try server?.sql("UPDATE jobs SET lease_until = lease_until - 3600 WHERE lease_node = 'node-a'")
        let taken = b.dueKeys(in: [.registered], now: now + 1, limit: 10)
        #expect(Set(taken) == Set(mine))
        #expect(Set(b.takeOvers().map(\.key)) == Set(mine) && b.takeOvers().isEmpty)
        // …and A, continued, writes nothing, cannot publish, and hears its leases are gone.
        r.polls = 9
        do { try a.save(r, event: nil); Issue.record("a save under a lost lease went through") } catch {
            #expect(error.leaseLost && error.message.contains("node node-b holds it"), "\(error)")
        }
        var published = false
        do { try a.fenced(mine[1]) { () throws(StoreError) in published = true }; Issue.record("fenced ran under a lost lease") } catch {
            #expect(error.leaseLost)
        }
        #expect(!published)
        #expect(Set(a.maintain(now: now + 100)) == Set(mine[2...]), "the leases not already found lost")
        #expect(try b.job(mine[0])?.polls == 7)
        // B holds them: its fence lets the publication through.
        for k in taken { b.claim(k) }
        #expect(try b.fenced(mine[1]) { () throws(StoreError) in true })
    }

    /// Each live daemon counts the others through the heartbeat `maintain` sends, and takes its share of a rate limit.
    @Test func liveNodesShareARateLimit() throws {
        guard available() else { return }
        let a = try open("share-a"), b = try open("share-b"), c = try open("share-c")
        let now = SystemClock.now()
        _ = a.maintain(now: now)
        _ = b.maintain(now: now)
        #expect(b.liveNodes == 2)
        _ = c.maintain(now: now)
        _ = a.maintain(now: now + 100)  // its next renewal
        #expect(a.liveNodes == 3)
        let limit = RateLimit(requests: 9, per: 1)
        #expect(limit.share(a.liveNodes) == RateLimit(requests: 3, per: 1))
        // A bucket rescaled to a smaller share keeps no more than the new burst, and is never topped up.
        var bucket = TokenBucket(limit, now: 0)
        for _ in 0..<8 { #expect(bucket.take(now: 0) == nil) }
        let shared = bucket.rescaled(limit.share(3))
        var s1 = shared
        #expect(s1.take(now: 0) == nil, "one token was left")
        #expect(s1.take(now: 0) != nil)
        var s2 = TokenBucket(limit, now: 0).rescaled(limit.share(3))
        #expect(s2.take(now: 0) == nil && s2.take(now: 0) == nil && s2.take(now: 0) == nil && s2.take(now: 0) != nil, "a full bucket keeps its new burst of 3")
    }

    @Test func settleLetsGoOfWhatIsNotWorkedOn() throws {
        guard available() else { return }
        let a = try open("settle-a"), b = try open("settle-b")
        let now = SystemClock.now()
        let ks = try keys("settle", 2)
        try a.register(ks, now: now)
        let got = a.dueKeys(in: [.registered], now: now + 1, limit: 2)
        #expect(got.count == 2)
        a.claim(got[0])  // a request in flight; the other was looked at and left for later
        var later = try #require(try a.job(got[1]))
        later.nextAt = now - 1
        try a.save(later)
        a.settle()
        #expect(b.dueKeys(in: [.registered], now: now + 1, limit: 5) == [got[1]])
        a.unclaim(got[0])
        a.settle()
        b.settle()
        #expect(Set(b.dueKeys(in: [.registered], now: now + 1, limit: 5)) == Set(ks))
    }

    @Test func recordsRoundTripAndServerTextIsKeptAsText() throws {
        guard available() else { return }
        let a = try open("roundtrip")
        let k = try keys("rt", 1)[0]
        try a.register([k], now: 1000.25)
        var r = try #require(try a.job(k))
        r.state = .fetching
        r.nextAt = 1234.5
        r.attempts = 3
        r.lastHTTPStatus = 503
        r.lastStatus = #"{"status":"ok","x":"a\u0000b","y":"Zoë \"quoted\" \\ {braces}"}"#
        r.apiStatus = "running\u{0}with a NUL"
        r.warnings = ["one", "two \"quoted\""]
        r.bytesDone = 5_000_000_000
        r.bytesTotal = 6_000_000_000
        r.rate = 1.5e6
        r.hook = Delivery(state: .pending, nextAt: 99.5)
        try a.save(r, event: "an event")
        var back = try #require(try a.job(k))
        #expect(back.node == nil || back.node == "roundtrip")
        back.node = nil
        var expected = r
        expected.apiStatus = "running\u{FFFD}with a NUL"  // PostgreSQL's text holds no NUL
        #expect(back == expected)
        #expect(try a.events(k).map(\.message) == ["registered", "an event"])
        #expect(try a.counts().contains { $0.kind == "dataset" && $0.state == .fetching && $0.count >= 1 })
    }

    @Test func aNewerSchemaIsRefusedAndMigrationIsRecordedOnce() throws {
        guard available() else { return }
        _ = try open("schema")
        let server = try #require(server)
        #expect(try server.sql("SELECT count(*) FROM jobfetch_schema") == "1")
        _ = try open("schema-again")
        #expect(try server.sql("SELECT count(*) FROM jobfetch_schema") == "1", "a second daemon finds the schema made")
        try server.sql("INSERT INTO jobfetch_schema VALUES (99, 0, 'future')")
        defer { _ = try? server.sql("DELETE FROM jobfetch_schema WHERE version = 99") }
        do { _ = try open("old-binary"); Issue.record("a newer schema was accepted") } catch {
            #expect(String(describing: error).contains("database schema 99 is newer than this program"), "\(error)")
        }
        do { _ = try PostgresStore(conninfo: server.uri, label: "test", node: "ctl", lease: 30, readOnly: true); Issue.record("a reader opened a newer schema") } catch {
            #expect(String(describing: error).contains("newer than this program"), "\(error)")
        }
    }
}
