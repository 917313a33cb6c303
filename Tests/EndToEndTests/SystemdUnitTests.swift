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
}
