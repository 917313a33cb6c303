import Foundation
import Glibc

/// A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary
/// directory, a Unix socket there and no TCP, trust authentication, stopped
/// and removed at the end. Runs as the `postgres` user when the tests run as
/// root (PostgreSQL refuses root). `unavailable` says why there is none.
public final class PostgresServer: Sendable {
    public let root: String
    public var socketDir: String { root + "/sock" }
    public var dataDir: String { root + "/data" }
    public let database = "jobfetch"
    /// The libpq URI a daemon's `store =` takes.
    public var uri: String { "postgresql:///\(database)?host=\(socketDir)&user=postgres" }

    static let binDir: String? = {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        return versions.map { "\(base)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }()

    /// Nil when a cluster can be made here; else why not (the tests skip, saying so).
    public static var unavailable: String? {
        if binDir == nil { return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; `apt-get install postgresql`, as .ci/run does)" }
        if getuid() == 0 && getpwnam("postgres") == nil { return "running as root, and there is no postgres user to run the server as" }
        return nil
    }

    public init() throws {
        guard Self.unavailable == nil, let bin = Self.binDir else { throw PostgresError(Self.unavailable ?? "no PostgreSQL") }
        var template = Array((NSTemporaryDirectory() + "/jobfetch-pg-XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw PostgresError("mkdtemp failed") }
        root = String(cString: p)
        mkdir(root + "/sock", 0o700)
        if getuid() == 0, let pw = getpwnam("postgres") {
            chown(root, pw.pointee.pw_uid, pw.pointee.pw_gid)
            chown(root + "/sock", pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        try run(bin + "/initdb", "-D", dataDir, "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
        try start()
        try run(bin + "/createdb", "-h", socketDir, "-U", "postgres", database)
    }

    deinit {
        try? stop()
        if ProcessInfo.processInfo.environment["KEEP_E2E"] == nil { try? FileManager.default.removeItem(atPath: root) }
    }

    /// Starts the server (again) and waits until it accepts connections.
    public func start() throws {
        guard let bin = Self.binDir else { return }
        try run(bin + "/pg_ctl", "-D", dataDir, "-l", root + "/server.log", "-w", "-t", "60",
                "-o", "-k \(socketDir) -c listen_addresses='' -c fsync=off -c max_connections=200", "start")
    }

    /// A fast shutdown: sessions are cut, what was committed stays.
    public func stop() throws {
        guard let bin = Self.binDir, FileManager.default.fileExists(atPath: dataDir + "/postmaster.pid") else { return }
        try run(bin + "/pg_ctl", "-D", dataDir, "-m", "fast", "-w", "-t", "60", "stop")
    }

    /// Runs SQL with psql; returns its unaligned, tuples-only output.
    @discardableResult
    public func sql(_ statement: String) throws -> String {
        guard let bin = Self.binDir else { return "" }
        return try run(bin + "/psql", "-h", socketDir, "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs a PostgreSQL program as the server's user, with none of this
    /// process's descriptors (a server left behind holds no lock of the runner).
    @discardableResult
    func run(_ argv: String...) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        var args = ["-c", "import os,sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])"]
        if getuid() == 0 { args += ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] }
        p.arguments = args + argv
        p.currentDirectoryURL = URL(fileURLWithPath: root)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else { throw PostgresError("\(argv.joined(separator: " ")) failed (\(p.terminationStatus)):\n\(text)") }
        return text
    }
}

public struct PostgresError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
