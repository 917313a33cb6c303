import Glibc
import Testing
import TestSupport
@testable import JobFetchArtifacts
@testable import JobFetchCore

/// The decompressor that follows a growing `.part` on its own thread.
@Suite struct PartInflaterTests {
    func gzip(_ bytes: [UInt8], _ dir: String, _ name: String) throws -> [UInt8] {
        try FileIO.writeAtomically(dir + "/" + name, bytes)
        guard shell("gzip -n -f \(dir)/\(name)") == 0 else { throw JobFetchError("gzip failed") }
        return try FileIO.readAll(dir + "/" + name + ".gz", limit: 256 << 20)
    }

    /// Waits (on its eventfd, not a sleep) for the worker's outcome.
    func outcome(_ d: PartInflater) -> DecodeOutcome? {
        var p = pollfd(fd: d.doneFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, 30_000)
        return d.outcome
    }

    /// sha256 as `sha256sum` computes it.
    func digest(_ bytes: [UInt8], _ dir: String) throws -> String {
        try FileIO.writeAtomically(dir + "/digest-input", bytes)
        return try FileDigest.sha256(dir + "/digest-input").hex
    }

    func data(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) } }

    @Test func followsAGrowingFileAndCatchesUpAfterAResume() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let plain = data(3 << 20)
        let gz = try gzip(plain, dir, "src")
        let part = dir + "/p.part"
        // The first half is on disk already (a resume); the rest arrives in pieces.
        try FileIO.writeAtomically(part, Array(gz[0..<(gz.count / 2)]))
        let d = try PartInflater(part: part, output: dir + "/out", limit: 1 << 30, maxRatio: 250)
        d.observe(.size(Int64(gz.count / 2)))
        var at = gz.count / 2
        while at < gz.count {
            let next = min(gz.count, at + 100_000)
            try FileIO.appendDurably(part, Array(gz[at..<next]))
            at = next
            d.observe(.size(Int64(at)))
        }
        d.finish(size: Int64(gz.count))
        #expect(outcome(d) == .inflated(bytes: Int64(plain.count), sha256: try digest(plain, dir)))
        #expect(try FileIO.readAll(dir + "/out", limit: 64 << 20) == plain)
    }

    @Test func aFreshBodyStartsItOverAndPlainDataIsLeftAlone() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let part = dir + "/p.part"
        let gz = try gzip(data(100_000), dir, "a")
        try FileIO.writeAtomically(part, Array(gz.prefix(5000)))
        let d = try PartInflater(part: part, output: dir + "/out", limit: 1 << 30, maxRatio: 250)
        d.observe(.size(5000))
        // The server sent the whole file again: it is replaced by other content.
        let other = data(50_000).map { $0 ^ 0x5A }
        let gz2 = try gzip(other, dir, "b")
        d.observe(.fresh(encoding: nil))
        try FileIO.writeAtomically(part, gz2)
        d.observe(.size(Int64(gz2.count)))
        d.finish(size: Int64(gz2.count))
        #expect(outcome(d) == .inflated(bytes: Int64(other.count), sha256: try digest(other, dir)))
        #expect(try FileIO.readAll(dir + "/out") == other)

        try FileIO.writeAtomically(dir + "/plain", Array("id,name\n1,a\n".utf8))
        let plain = try PartInflater(part: dir + "/plain", output: dir + "/out2", limit: 1 << 30, maxRatio: 250)
        plain.finish(size: 12)
        #expect(outcome(plain) == .notCompressed(bytes: 12, sha256: try digest(Array("id,name\n1,a\n".utf8), dir)))
    }

    /// Text whose first bytes pass every check of zlib's start (`x^` then a
    /// fixed-Huffman block) is published as it came, in pieces or not.
    @Test func textThatOpensLikeZlibIsLeftAlone() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let text = Array(String(repeating: "x^\n1,2,3\n", count: 2000).utf8)
        #expect(text.prefix(8).withUnsafeBytes { InflateStream.sniff($0) } == .zlib, "the first eight bytes do look like zlib")
        try FileIO.writeAtomically(dir + "/t.part", Array(text.prefix(100)))
        let d = try PartInflater(part: dir + "/t.part", output: dir + "/out", limit: 1 << 30, maxRatio: 250)
        d.observe(.size(100))
        try FileIO.writeAtomically(dir + "/t.part", text)
        d.observe(.size(Int64(text.count)))
        d.finish(size: Int64(text.count))
        #expect(outcome(d) == .notCompressed(bytes: Int64(text.count), sha256: try digest(text, dir)))
        // Shorter than the trial: decided at the end, on all of it.
        let short = Array("x^\n1,2\n".utf8)
        try FileIO.writeAtomically(dir + "/s.part", short)
        let e = try PartInflater(part: dir + "/s.part", output: dir + "/out2", limit: 1 << 30, maxRatio: 250)
        e.finish(size: Int64(short.count))
        #expect(outcome(e) == .notCompressed(bytes: Int64(short.count), sha256: try digest(short, dir)))
    }

    @Test func truncatedCorruptAndBombsFail() throws {
        let dir = makeTempDir()
        defer { try? FileIO.removeTree(dir) }
        let gz = try gzip(data(200_000), dir, "t")
        try FileIO.writeAtomically(dir + "/trunc", Array(gz.dropLast(10)))
        let t = try PartInflater(part: dir + "/trunc", output: dir + "/o1", limit: 1 << 30, maxRatio: 250)
        t.finish(size: Int64(gz.count - 10))
        guard case .failed(let why)? = outcome(t) else { Issue.record("truncated must fail"); return }
        #expect(why.contains("truncated"))

        let zeros = try gzip([UInt8](repeating: 0, count: 80 << 20), dir, "z")
        try FileIO.writeAtomically(dir + "/bomb", zeros)
        let b = try PartInflater(part: dir + "/bomb", output: dir + "/o2", limit: 1 << 40, maxRatio: 250)
        b.finish(size: Int64(zeros.count))
        guard case .failed(let ratio)? = outcome(b) else { Issue.record("a bomb must fail"); return }
        #expect(ratio.contains("more than 250 times its input"))
    }
}
