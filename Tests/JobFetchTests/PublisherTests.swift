import Glibc
import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore
import CLinux

@Suite struct PublisherTests {
    func record(_ id: String, finishedAt: Double) throws -> JobRecord {
        var r = JobRecord(key: JobKey(kind: "k", id: try JobID(id)), state: .publishing, registeredAt: 1)
        r.finishedAt = finishedAt
        return r
    }

    @Test func aRetriedResultReplacesTheOldDirectoryInOneSwap() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let publisher = Publisher(outputDir: dir)
        let old = try record("j", finishedAt: 100)
        try write(try publisher.freshStaging(old.key) + "/a.csv", "old\n")
        try publisher.publish(.init(record: old, outcome: .failed, files: [], finishedAt: 100))
        #expect(publisher.isPublished(old.key, finishedAt: 100))

        var new = try record("j", finishedAt: 200)
        new.summary = #"{"results":{"warnings":2}}"#
        new.retries = 1
        let staging = try publisher.freshStaging(new.key)
        try write(staging + "/b.csv", "new\n")
        // Until the swap the old result is what a reader sees, and it is not "this" publication.
        #expect(!publisher.isPublished(new.key, finishedAt: 200))
        let digest = try FileDigest.sha256(staging + "/b.csv")
        try publisher.publish(.init(record: new, outcome: .succeeded,
                                    files: [PublishedFile(name: "b.csv", bytes: digest.bytes, sha256: digest.hex, source: nil)], finishedAt: 200))
        let final = publisher.finalDirectory(new.key)
        #expect(try FileIO.list(final).sorted() == ["b.csv", "job.json"])
        #expect(!FileIO.exists(staging), "the swapped-out old result is removed")
        #expect(publisher.isPublished(new.key, finishedAt: 200))
        let job = try JSONParser.parse(try FileIO.readAll(final + "/job.json"))
        #expect(job["outcome"] == "succeeded")
        #expect(job["retries"] == .int(1))
        #expect(job["summary"]?["results"]?["warnings"] == .int(2))
    }

    @Test func renameExchangeSwapsTwoDirectories() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        try FileIO.makeDirectories(dir + "/a")
        try FileIO.makeDirectories(dir + "/b")
        try write(dir + "/a/x", "a")
        try write(dir + "/b/y", "b")
        #expect(jf_rename_exchange(dir + "/a", dir + "/b") == 0)
        #expect(FileIO.exists(dir + "/a/y") && FileIO.exists(dir + "/b/x"))
    }
}
