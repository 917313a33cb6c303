import Dispatch
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
        // The removal is held until the test lets it go: discard must return before it.
        let gate = DispatchSemaphore(value: 0)
        let discarder = try Discarder(directory: dir + "/incoming") { path in
            gate.wait()
            _ = FileIO.unlinkIfPresent(path)
        }
        discarder.discard(part)
        #expect(!FileIO.exists(part), "gone from where it was before discard returns")
        let trash = try FileIO.list(dir + "/incoming").filter { $0.hasPrefix(".discard-\(getpid())-1-") }
        #expect(trash.count == 1, "renamed beside, its removal still held")
        #expect(!discarder.waitUntilIdle(timeout: 0.05), "the removal is pending")
        gate.signal()
        #expect(discarder.waitUntilIdle(timeout: 30))
        #expect(try FileIO.list(dir + "/incoming").sorted() == ["dataset", "keep"], "unlinked, and nothing else touched")
        // A file that cannot be renamed there is unlinked in place: gone already, or on another filesystem.
        discarder.discard(dir + "/missing")
        if FileIO.exists("/dev/shm") {
            let elsewhere = "/dev/shm/jobfetch-discard-\(getpid())"
            try FileIO.writeAtomically(elsewhere, [1])
            discarder.discard(elsewhere)
            #expect(!FileIO.exists(elsewhere))
        }
        #expect(discarder.waitUntilIdle(timeout: 30))
    }

    @Test func sweepRemovesWhatAnEarlierRunLeft() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        for name in [".discard-17-1-9f", ".discard-1-2-a0", ".expired-x", "dataset"] { try FileIO.writeAtomically(dir + "/" + name, [0]) }
        let discarder = try Discarder(directory: dir)
        #expect(discarder.sweep() == 2)
        #expect(try FileIO.list(dir).sorted() == [".expired-x", "dataset"])
        #expect(discarder.sweep() == 0)
    }
}
