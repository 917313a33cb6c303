import Foundation
import Glibc
import JobFetchArtifacts
import JobFetchCore
import Testing
import TestSupport

/// Several jobfetchd sharing one PostgreSQL store and one output directory:
/// the real binaries, a throwaway cluster (initdb, Unix socket), the fake
/// APIs and nginx over real sockets, kill -9 and SIGSTOP.
@Suite(.serialized) struct PostgresEndToEndTests {
    /// The installation (fake API, node configs) and its cluster.
    final class Shared {
        let inst: Installation
        let pg: PostgresServer
        var daemons: [String: Child] = [:]
        /// The artifacts' server of `downloadingOnA`, kept as long as the installation.
        var nginx: Nginx?

        init(lease: String = "3s", sections: String = "", daemonLines: String = "") throws {
            pg = try PostgresServer()
            inst = try Installation(sections: sections, daemonLines: "store = \(pg.uri)\nlease = \(lease)" + (daemonLines.isEmpty ? "" : "\n" + daemonLines))
        }

        deinit { for d in daemons.values { d.signal(SIGKILL) } }

        /// Each node: its own config, state and spool; the store and output are shared.
        func config(_ node: String) throws -> String {
            let path = inst.root + "/\(node).conf"
            if !FileIO.exists(path) {
                let text = String(decoding: try FileIO.readAll(inst.configPath), as: UTF8.self)
                    .replacingOccurrences(of: "state_dir = \(inst.root)/state", with: "state_dir = \(inst.root)/state-\(node)")
                    .replacingOccurrences(of: "spool_dir = \(inst.root)/spool", with: "spool_dir = \(inst.root)/spool-\(node)\nnode_name = \(node)")
                try FileIO.writeAtomically(path, Array(text.utf8))
            }
            return path
        }

        func spool(_ node: String) -> String { inst.root + "/spool-\(node)" }
        func log(_ node: String) -> String { (try? String(contentsOfFile: inst.root + "/\(node).log", encoding: .utf8)) ?? "" }
        var logs: String { daemons.keys.sorted().map { "--- \($0)\n" + log($0) }.joined(separator: "\n") }

        /// Starts `node`'s daemon without waiting.
        func launch(_ node: String) throws {
            daemons[node] = try Child([Installation.binDir + "/jobfetchd", "--config", try config(node)], stderrPath: inst.root + "/\(node).log")
        }

        /// Waits until `node`'s log has a line containing `text`.
        func waitForLog(_ node: String, _ text: String, timeout: Double = 30) throws -> Bool {
            try Inotify.wait(until: { self.log(node).contains(text) }, in: inst.root, mask: UInt32(IN_MODIFY), timeout: timeout)
        }

        func start(_ nodes: String...) throws {
            for n in nodes { try launch(n) }
            for n in nodes { #expect(try waitForLog(n, "started:"), "\(n) did not start:\n\(log(n))") }
        }

        func ctl(_ node: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Installation.binDir + "/jobfetchctl")
            p.arguments = ["--config", try config(node)] + args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }

        /// Drops a spool file of IDs on `node` (written aside and renamed in, as a careful writer does).
        func drop(_ node: String, kind: String, _ ids: [String], name: String) throws {
            try FileIO.makeDirectories(spool(node) + "/" + kind)
            try FileIO.writeAtomically(spool(node) + "/\(kind)/\(name)", Array(ids.joined(separator: "\n").utf8))
        }

        /// Waits until `<output>/<kind>/` holds `count` published directories,
        /// reading the fake API's request log meanwhile (a full pipe would stop it).
        func waitForResults(kind: String, count: Int, timeout: Double) throws -> Bool {
            let dir = inst.output + "/" + kind
            let deadline = Date().addingTimeInterval(timeout)
            while ((try? FileIO.list(dir)) ?? []).count < count {
                guard Date() < deadline else { return false }
                _ = inst.api.waitForLine(timeout: 0.5) { _ in false }
            }
            return true
        }

        /// Node a alone starts `dataset/ext-<name>`, 12 MiB from nginx's 2 MB/s
        /// location, until its part has a checkpoint; then node b starts.
        /// Returns nginx, the file's bytes and that checkpoint.
        func downloadingOnA(_ name: String, seed: UInt64) throws -> (nginx: Nginx, data: [UInt8], part: PartSidecar) {
            let nginx = try Nginx(root: inst.root + "/nginx")
            self.nginx = nginx
            let data = pseudoRandomBytes(12 << 20, seed: seed)
            try FileIO.writeAtomically(nginx.www + "/slow/\(name).bin", data)
            try FileIO.writeAtomically(inst.dataDir + "/ext-\(name).url", Array((nginx.base + "/slow/\(name).bin").utf8))
            try start("a")
            #expect(try ctl("a", ["add", "dataset", "ext-\(name)"]).status == 0)
            let part = try #require(try inst.waitForPart("ext-\(name)"))
            try start("b")
            return (nginx, data, part)
        }

        /// How many of the nodes' logs say they published `kind/id` (a recovered publication is not one).
        func publications(_ kind: String, _ id: String) -> Int {
            daemons.keys.reduce(0) { n, node in
                n + log(node).split(separator: "\n").filter { $0.contains("\(kind)/\(id): published ") && !$0.hasSuffix("(recovered)") }.count
            }
        }
    }

    func available() -> Bool {
        if let why = PostgresServer.unavailable { print("skipping: \(why)"); return false }
        return true
    }

    @Test func threeDaemonsStartingAtOnceMigrateOnce() throws {
        guard available() else { return }
        let s = try Shared()
        for n in ["a", "b", "c"] { try s.launch(n) }
        for n in ["a", "b", "c"] { #expect(try s.waitForLog(n, "started:"), "\(s.logs)") }
        #expect(try s.pg.sql("SELECT count(*) FROM jobfetch_schema") == "1", "\(s.logs)")
        #expect(try s.pg.sql("SELECT count(DISTINCT name) FROM jobfetch_nodes") == "3" || s.log("a").contains("started:"))
        #expect(s.log("a").contains("as node a"))
        // The password-free URI is what the log shows.
        #expect(s.log("b").contains("store postgresql:///jobfetch?host="))
    }

    @Test func threeDaemonsPublishAThousandJobsEachExactlyOnce() throws {
        guard available() else { return }
        // The preset tests' kinds: bulk (bulk-job) and task (job) among them.
        let s = try Shared(lease: "30s", sections: PresetEndToEndTests.sections)
        let jobs: [(kind: String, ids: [String])] = [
            ("dataset", (0..<400).map { "done-1-m\($0)" }),
            ("task", (0..<300).map { "done-m\($0)" }),
            ("bulk", (0..<300).map { "inline-m\($0)" }),
        ]
        try s.start("a", "b", "c")
        // Each node's spool gets a third of each kind, and a few IDs twice (on two nodes): registered once.
        let nodes = ["a", "b", "c"]
        for (kind, ids) in jobs {
            for (i, node) in nodes.enumerated() {
                var part = ids.enumerated().filter { $0.offset % 3 == i }.map(\.element)
                part += ids.prefix(5)
                try s.drop(node, kind: kind, part, name: "batch-\(kind)")
            }
        }
        for (kind, ids) in jobs {
            #expect(try s.waitForResults(kind: kind, count: ids.count, timeout: 240), "\(kind): \((try? FileIO.list(s.inst.output + "/" + kind))?.count ?? 0) of \(ids.count)")
        }
        // Every job: one directory, its job.json succeeded, one publication in all the logs.
        var twice: [String] = []
        for (kind, ids) in jobs {
            #expect(try FileIO.list(s.inst.output + "/" + kind).sorted() == ids.sorted())
            for id in ids {
                let job = try s.inst.jobJSON(id, kind: kind)
                #expect(job["outcome"] == "succeeded", "\(kind)/\(id): \(job)")
                if s.publications(kind, id) != 1 { twice.append("\(kind)/\(id): \(s.publications(kind, id))") }
            }
        }
        #expect(twice.isEmpty, "published other than once: \(twice.prefix(10))")
        // The fake API was asked for each artifact once: nothing was downloaded twice.
        _ = s.inst.api.waitForLine(timeout: 1) { _ in false }
        var downloads: [String: Int] = [:]
        for line in s.inst.api.lines where line.hasPrefix("REQ GET ") && (line.contains("/csv ") || line.contains("/download ")) {
            downloads[String(line.split(separator: " ")[2]), default: 0] += 1
        }
        #expect(downloads.count == 700, "\(downloads.count) artifacts asked for")
        #expect(downloads.values.allSatisfy { $0 == 1 }, "\(downloads.filter { $0.value > 1 })")
        // Work was shared, and every node's jobfetchctl sees every job and who published it.
        let work = nodes.map { n in s.log(n).components(separatedBy: ": published ").count - 1 }
        #expect(work.allSatisfy { $0 > 0 }, "publications per node: \(work)")
        let list = try s.ctl("b", ["list", "--json", "--kind", "task"])
        guard case .array(let rows) = try JSONParser.parse(Array(list.out.utf8)) else { Issue.record("list: \(list)"); return }
        #expect(rows.count == 300)
        #expect(rows.allSatisfy { ["a", "b", "c"].contains($0["node"]?.scalarText ?? "") })
        print("publications per node a/b/c: \(work)")
    }

    /// A daemon killed with its download half done: another takes the job
    /// over once the lease runs out and resumes from the shared `.part`.
    @Test func aKilledDaemonsDownloadIsTakenOverAndResumedWithRange() throws {
        guard available() else { return }
        let s = try Shared()
        let (nginx, data, part) = try s.downloadingOnA("takeover", seed: 41)
        s.daemons["a"]?.signal(SIGKILL)
        _ = s.daemons["a"]?.waitExit()
        #expect(try s.waitForLog("b", "dataset/ext-takeover: taking the job over from node a"), "\(s.logs)")
        #expect(try s.inst.waitForResult("ext-takeover"), "\(s.logs)")
        #expect(try FileIO.readAll("\(s.inst.output)/dataset/ext-takeover/takeover.bin", limit: 64 << 20) == data)
        let lines = nginx.accessLog.filter { $0.hasPrefix("GET /slow/takeover.bin ") }
        let resumed = try #require(lines.last)
        let from = Int64(logField(resumed, "range").dropFirst(6).dropLast()) ?? -1
        #expect(logField(resumed, "status") == "206" && from >= part.synced, "\(lines)")
        let sent = lines.reduce(Int64(0)) { $0 + (Int64(logField($1, "sent")) ?? 0) }
        print("takeover after kill -9: resumed from \(from) of \(data.count) bytes; re-sent \(sent - Int64(data.count)) bytes")
        #expect(s.publications("dataset", "ext-takeover") == 1)
        let listed = try JSONParser.parse(Array(try s.ctl("a", ["list", "--json"]).out.utf8))
        #expect(listed.value(at: try JSONPointer("/0/node")) == "b", "the node that published it: \(listed)")
    }

    /// A daemon stopped (SIGSTOP) past its lease, then continued: the job was
    /// taken over and published by another; the first never publishes it and says so.
    @Test func aDaemonPausedPastItsLeaseNeverPublishesTheJobTakenOver() throws {
        guard available() else { return }
        let s = try Shared()
        let (_, data, _) = try s.downloadingOnA("paused", seed: 42)
        s.daemons["a"]?.signal(SIGSTOP)
        #expect(try s.waitForLog("b", "dataset/ext-paused: taking the job over from node a"), "\(s.logs)")
        #expect(try s.inst.waitForResult("ext-paused", timeout: 60), "\(s.logs)")
        s.daemons["a"]?.signal(SIGCONT)
        #expect(try s.waitForLog("a", "dataset/ext-paused: lost the lease on this job"), "\(s.logs)")
        // b logs its publication after the rename that waitForResult saw: under load, after a's line.
        #expect(try s.waitForLog("b", "dataset/ext-paused: published "), "\(s.logs)")
        #expect(s.publications("dataset", "ext-paused") == 1)
        #expect(!s.log("a").contains("dataset/ext-paused: published"), "\(s.log("a"))")
        #expect(try FileIO.readAll("\(s.inst.output)/dataset/ext-paused/paused.bin", limit: 64 << 20) == data)
        let job = try s.inst.jobJSON("ext-paused")
        #expect(job["outcome"] == "succeeded")
    }

    /// PostgreSQL restarted while three daemons work: they reconnect, and every job is still published once.
    @Test func postgresRestartedUnderLoadLosesNothing() throws {
        guard available() else { return }
        let s = try Shared(lease: "5s")
        try s.start("a", "b", "c")
        let ids = (0..<150).map { "done-3-r\($0)" }
        for (i, node) in ["a", "b", "c"].enumerated() {
            try s.drop(node, kind: "dataset", ids.enumerated().filter { $0.offset % 3 == i }.map(\.element), name: "batch")
        }
        #expect(try s.waitForResults(kind: "dataset", count: 20, timeout: 120), "\(s.logs)")
        try s.pg.stop()
        try s.pg.start()
        #expect(try s.waitForResults(kind: "dataset", count: ids.count, timeout: 240), "\(s.logs)")
        for id in ids {
            #expect(try s.inst.jobJSON(id)["outcome"] == "succeeded")
            #expect(s.publications("dataset", id) == 1, "\(id)")
        }
        #expect(try s.pg.sql("SELECT count(*) FROM jobs WHERE state = 'succeeded'") == "150")
    }
}
