import Foundation
import Testing

/// jobfetchctl runs beside the service, often as another user: it reads the
/// config and the store and writes the spool. The module split keeps the
/// transfer layer (libcurl) and the artifacts layer (ISA-L, OpenSSL,
/// ZIPFoundation) out of it; this checks the binaries as built, with the
/// daemon as the control that shows each check can see what it looks for.
@Suite struct LinkageTests {
    /// The shared libraries a binary names itself (its `DT_NEEDED` entries).
    /// Not `ldd`'s whole closure: libpq, which jobfetchctl needs for a shared
    /// store, brings libcrypto for TLS to PostgreSQL, and that is not the
    /// artifacts layer's hashing linked in.
    func sharedLibraries(_ binary: String) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        p.arguments = ["-d", binary]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").filter { $0.contains("(NEEDED)") }
            .compactMap { line in line.split(separator: "[").last.map { String($0.dropLast()) } }
    }

    /// Whether a Swift module is linked into a binary (read once): its
    /// mangled name ("13ZIPFoundation") is in the symbols and the type metadata.
    func containsModule(_ bytes: Data, _ module: String) -> Bool {
        bytes.range(of: Data("\(module.utf8.count)\(module)".utf8)) != nil
    }

    @Test func jobfetchctlLinksNoTransferOrArtifactLibrary() throws {
        let ctl = Installation.binDir + "/jobfetchctl", daemon = Installation.binDir + "/jobfetchd"
        let ctlLibraries = try sharedLibraries(ctl), daemonLibraries = try sharedLibraries(daemon)
        for library in ["libcurl.so", "libisal.so", "libcrypto.so"] {
            #expect(daemonLibraries.contains { $0.hasPrefix(library) }, "jobfetchd should link \(library): \(daemonLibraries)")
            #expect(!ctlLibraries.contains { $0.hasPrefix(library) }, "jobfetchctl links \(library): \(ctlLibraries)")
        }
        #expect(ctlLibraries.contains { $0.hasPrefix("libsqlite3.so") }, "\(ctlLibraries)")
        #expect(ctlLibraries.contains { $0.hasPrefix("libpq.so") }, "\(ctlLibraries)")
        let ctlBytes = try Data(contentsOf: URL(fileURLWithPath: ctl))
        let daemonBytes = try Data(contentsOf: URL(fileURLWithPath: daemon))
        for module in ["ZIPFoundation", "JobFetchTransfer", "JobFetchArtifacts", "JobFetchEngine"] {
            #expect(containsModule(daemonBytes, module), "jobfetchd should contain \(module)")
            #expect(!containsModule(ctlBytes, module), "jobfetchctl contains \(module)")
        }
    }
}
