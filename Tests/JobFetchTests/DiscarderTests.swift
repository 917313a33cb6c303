import Glibc
import Testing
@testable import JobFetchArtifacts
@testable import JobFetchCore

/// Parts are taken out of the staging directory at once and unlinked on a
/// thread; what a crash leaves behind goes at the next start.
@Suite struct DiscarderTests {
    @Test func aDiscardedFileLeavesAtOnceAndIsUnlinkedOnAThread() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        try FileIO.makeDirectories(dir + "/incoming/dataset/ext-1")
        let part = dir + "/incoming/dataset/ext-1/.artifact.part"
        try FileIO.writeAtomically(part, [UInt8](repeating: 7, count: 3 << 20))
        try FileIO.writeAtomically(dir + "/incoming/keep", [1])
        let discarder = try Discarder(directory: dir + "/incoming")
        discarder.discard(part)
        #expect(!FileIO.exists(part), "gone from where it was before discard returns")
        discarder.waitUntilIdle()
        #expect(try FileIO.list(dir + "/incoming").sorted() == ["dataset", "keep"], "unlinked, and nothing else touched")
        // A file the rename cannot move (another filesystem, or gone already) is unlinked in place.
        let elsewhere = "/dev/shm/jobfetch-discard-\(getpid())"
        try FileIO.writeAtomically(elsewhere, [1])
        discarder.discard(elsewhere)
        #expect(!FileIO.exists(elsewhere))
        discarder.discard(dir + "/missing")
        discarder.waitUntilIdle()
    }

    @Test func sweepRemovesWhatAnEarlierRunLeft() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        for name in [".discard-17-1", ".discard-17-2", ".expired-x", "dataset"] { try FileIO.writeAtomically(dir + "/" + name, [0]) }
        let discarder = try Discarder(directory: dir)
        #expect(discarder.sweep() == 2)
        #expect(try FileIO.list(dir).sorted() == [".expired-x", "dataset"])
        #expect(discarder.sweep() == 0)
    }
}
