import Testing
import TestSupport
@testable import JobFetch

@Suite struct InflaterTests {
    let dir = makeTempDir()

    func make(_ name: String, _ text: String) throws -> String {
        try write(dir + "/" + name, text)
        return dir + "/" + name
    }

    @Test func gzipMultiMemberAndZlib() throws {
        defer { try? FileIO.removeTree(dir) }
        let a = try make("a.txt", String(repeating: "alpha,1\n", count: 20000))
        let b = try make("b.txt", "beta,2\n")
        #expect(shell("gzip -c '\(a)' > '\(dir)/m.gz' && gzip -c '\(b)' >> '\(dir)/m.gz'") == 0)
        #expect(Inflater.sniff(dir + "/m.gz") == .gzip)
        let n = try Inflater.inflate(dir + "/m.gz", to: dir + "/m.out", limit: 1 << 30)
        let expected = try FileIO.readAll(a) + FileIO.readAll(b)
        #expect(n == Int64(expected.count))
        #expect(try FileIO.readAll(dir + "/m.out") == expected, "both gzip members decoded")

        #expect(shell("python3 -c \"import zlib,sys; sys.stdout.buffer.write(zlib.compress(open('\(b)','rb').read()))\" > '\(dir)/z.zz'") == 0)
        #expect(Inflater.sniff(dir + "/z.zz") == .zlib)
        _ = try Inflater.inflate(dir + "/z.zz", to: dir + "/z.out", limit: 1 << 30)
        #expect(try FileIO.readAll(dir + "/z.out") == FileIO.readAll(b))
        #expect(Inflater.sniff(b) == nil)
    }

    @Test func truncatedGzipIsAnError() throws {
        defer { try? FileIO.removeTree(dir) }
        let a = try make("a.txt", String(repeating: "x,y,z\n", count: 50000))
        #expect(shell("gzip -c '\(a)' > '\(dir)/full.gz' && head -c $(( $(stat -c %s '\(dir)/full.gz') / 2 )) '\(dir)/full.gz' > '\(dir)/t.gz'") == 0)
        #expect(try FileIO.readAll(dir + "/t.gz").count > 100, "the truncated file still has data")
        #expect {
            _ = try Inflater.inflate(dir + "/t.gz", to: dir + "/t.out", limit: 1 << 30)
        } throws: { ($0 as? JobFetchError)?.message.contains("truncated") == true }
    }

    @Test func corruptGzipIsAnError() throws {
        defer { try? FileIO.removeTree(dir) }
        let a = try make("a.txt", String(repeating: "x,y,z\n", count: 5000))
        #expect(shell("gzip -c '\(a)' > '\(dir)/c.gz' && printf 'XXXX' | dd of='\(dir)/c.gz' bs=1 seek=30 conv=notrunc 2>/dev/null") == 0)
        #expect {
            _ = try Inflater.inflate(dir + "/c.gz", to: dir + "/c.out", limit: 1 << 30)
        } throws: { ($0 as? JobFetchError)?.message.contains("corrupt") == true }
    }

    @Test func outputLimitStopsABomb() throws {
        defer { try? FileIO.removeTree(dir) }
        #expect(shell("head -c 50000000 /dev/zero | gzip -c > '\(dir)/bomb.gz'") == 0)
        #expect {
            _ = try Inflater.inflate(dir + "/bomb.gz", to: dir + "/bomb.out", limit: 1 << 20)
        } throws: { ($0 as? JobFetchError)?.message.contains("max_output_size") == true }
    }
}
