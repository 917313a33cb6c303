import Foundation
import Glibc
import JobFetchCore
import Testing

/// The shipped unit, checked by systemd's own tools (installed by `make test`).
@Suite struct SystemdUnitTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The unit with ExecStart pointing at the binaries just built (verify wants them to exist).
    func builtUnit() throws -> String {
        let text = String(decoding: try FileIO.readAll(Self.repo + "/systemd/jobfetchd.service"), as: UTF8.self)
            .replacingOccurrences(of: "/usr/bin/jobfetchd", with: Installation.binDir + "/jobfetchd")
        let dir = NSTemporaryDirectory() + "/jf-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileIO.makeDirectories(dir)
        try FileIO.writeAtomically(dir + "/jobfetchd.service", Array(text.utf8))
        return dir + "/jobfetchd.service"
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func theUnitVerifiesAndIsHardened() throws {
        let unit = try builtUnit()
        defer { try? FileIO.removeTree(FileIO.parent(unit)) }
        let verify = try run(["verify", unit])
        #expect(verify.status == 0, "\(verify.out)")
        #expect(verify.out.isEmpty, "systemd-analyze verify has remarks:\n\(verify.out)")
        let security = try run(["security", "--offline=true", unit])
        let line = try #require(security.out.split(separator: "\n").first { $0.contains("Overall exposure level") })
        // "→ Overall exposure level for jobfetchd.service: 1.2 OK"
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) } ?? 99
        #expect(score <= 2.0, "\(line)")
        let text = String(decoding: try FileIO.readAll(unit), as: UTF8.self)
        for key in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=jobfetchd", "ConfigurationDirectory=jobfetchd",
                    "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "RestrictAddressFamilies=", "ReadWritePaths="] {
            #expect(text.contains(key), "\(key)")
        }
    }

    /// The system calls in a `SystemCallFilter=` group, nested groups expanded (systemd's own table).
    func syscalls(in group: String, seen: inout Set<String>) throws -> Set<String> {
        guard seen.insert(group).inserted else { return [] }
        let listed = try run(["syscall-filter", group])
        #expect(listed.status == 0, "\(listed.out)")
        var out: Set<String> = []
        for line in listed.out.split(separator: "\n").dropFirst().map({ $0.trimmingCharacters(in: .whitespaces) }) where !line.isEmpty && !line.hasPrefix("#") {
            if line.hasPrefix("@") { out.formUnion(try syscalls(in: line, seen: &seen)) } else { out.insert(line) }
        }
        return out
    }

    /// on_complete hooks run under the unit's hardening: what the daemon
    /// calls to start and watch one (posix_spawn, pidfd, kill of the group,
    /// reaping) and what a shell script calls are allowed by its filter.
    @Test func theUnitsSystemCallFilterLetsHooksRun() throws {
        let text = String(decoding: try FileIO.readAll(Self.repo + "/systemd/jobfetchd.service"), as: UTF8.self)
        var allowed: Set<String> = [], denied: Set<String> = []
        for line in text.split(separator: "\n") where line.hasPrefix("SystemCallFilter=") {
            let value = line.dropFirst("SystemCallFilter=".count)
            let deny = value.hasPrefix("~")
            for word in value.drop(while: { $0 == "~" }).split(separator: " ") {
                var seen = Set<String>()
                let names = word.hasPrefix("@") ? try syscalls(in: String(word), seen: &seen) : [String(word)]
                if deny { denied.formUnion(names) } else { allowed.formUnion(names) }
            }
        }
        for call in ["execve", "clone", "clone3", "vfork", "fork", "wait4", "waitid", "kill", "pidfd_open", "pipe2", "close_range",
                     "setpgid", "rt_sigprocmask", "rt_sigaction", "dup2", "dup3", "openat", "poll", "ppoll"] {
            #expect(allowed.contains(call) && !denied.contains(call), "\(call) is not allowed by the unit's SystemCallFilter=")
        }
        #expect(text.contains("NoNewPrivileges=yes"), "hooks run with no new privileges, as the daemon")
    }
}
