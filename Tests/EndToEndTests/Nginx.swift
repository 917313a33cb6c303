import Foundation
import Glibc
import JobFetchCore
import Testing

/// A real nginx on a free loopback port, serving `<root>/www`, for the
/// download tests. Single process (`master_process off`) so a kill ends it.
/// Its access log records each request's Range, If-Range and credentials.
final class Nginx {
    let root: String
    let port: Int
    private(set) var child: Child
    var www: String { root + "/www" }
    var base: String { "http://127.0.0.1:\(port)" }

    static let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }

    init(root: String) throws {
        guard let binary = Self.binary else { throw JobFetchError("nginx is not installed (make deps installs nginx-light)") }
        self.root = root
        try FileIO.makeDirectories(root + "/www/slow")
        try FileIO.makeDirectories(root + "/www/noranges")
        try FileIO.makeDirectories(root + "/tmp")
        port = try Self.freePort()
        let user = getuid() == 0 ? "user root;" : ""
        let conf = """
            \(user)
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(root)/nginx.pid;
            error_log \(root)/error.log info;
            events { worker_connections 64; }
            http {
                log_format jf escape=none '$request_method $uri range=$http_range if_range=$http_if_range ae=$http_accept_encoding key=$http_x_api_key auth=$http_authorization status=$status sent=$body_bytes_sent at=$msec took=$request_time';
                access_log \(root)/access.log jf;
                client_body_temp_path \(root)/tmp/body;
                proxy_temp_path \(root)/tmp/proxy;
                fastcgi_temp_path \(root)/tmp/fastcgi;
                uwsgi_temp_path \(root)/tmp/uwsgi;
                scgi_temp_path \(root)/tmp/scgi;
                types { application/gzip gz; text/csv csv; application/zip zip; application/octet-stream bin; }
                default_type application/octet-stream;
                sendfile on;
                map $http_range $named_cd { "" 'attachment; filename="cd-$named_file"'; default ""; }
                server {
                    listen 127.0.0.1:\(port);
                    root \(root)/www;
                    location /slow/ { limit_rate 2m; }
                    # nginx lets each request send its first second at once (rate × (elapsed + 1)),
                    # so pieces shorter than that would not be held to the rate: the segmented
                    # tests use a rate whose second is half their smallest piece.
                    location /slower/ { alias \(root)/www/slow/; limit_rate 512k; }
                    location /noranges/ { max_ranges 0; limit_rate 2m; }
                    # The files of /slow/, named by Content-Disposition on a whole answer only,
                    # as some servers do (no header on a 206 or a 416).
                    location ~ ^/named/(?<named_file>.+)$ {
                        alias \(root)/www/slow/$named_file;
                        limit_rate 2m;
                        add_header Content-Disposition $named_cd;
                    }
                }
            }
            """
        try FileIO.writeAtomically(root + "/nginx.conf", Array(conf.utf8))
        child = try Self.launch(binary, root)
    }

    static func launch(_ binary: String, _ root: String) throws -> Child {
        FileIO.unlinkIfPresent(root + "/nginx.pid")
        let child = try Child([binary, "-p", root, "-c", root + "/nginx.conf", "-e", root + "/error.log"], stderrPath: root + "/nginx.stderr")
        // The pid file is written once the listening socket is open.
        guard try Inotify.wait(for: "nginx.pid", in: root, timeout: 30) else {
            throw JobFetchError("nginx did not start: \((try? String(contentsOfFile: root + "/error.log", encoding: .utf8)) ?? "")")
        }
        return child
    }

    /// Kills nginx (connections drop mid-transfer).
    func kill() {
        child.signal(SIGKILL)
        child.waitExit()
    }

    /// Starts it again on the same port.
    func restart() throws {
        guard let binary = Self.binary else { return }
        child = try Self.launch(binary, root)
    }

    deinit { child.signal(SIGKILL) }

    /// A port the kernel just handed out and took back.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", "127.0.0.1") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw SystemError("bind", "127.0.0.1:0") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The access log's lines so far (a request is logged when it ends).
    var accessLog: [String] {
        ((try? String(contentsOfFile: root + "/access.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// When a logged request began (seconds since the epoch, to the millisecond):
    /// the log is written in the order requests end.
    static func began(_ line: String) -> Double {
        (Double(logField(line, "at")) ?? 0) - (Double(logField(line, "took")) ?? 0)
    }

    /// Waits, on inotify, until the access log has a line satisfying `match`.
    func waitForRequest(timeout: Double = 30, _ match: (String) -> Bool) throws -> String? {
        var hit: String?
        _ = try Inotify.wait(until: { hit = self.accessLog.first(where: match); return hit != nil }, in: root,
                             mask: UInt32(IN_MODIFY | IN_CREATE), timeout: timeout)
        return hit
    }
}

/// Bytes that are the same every run and compress poorly (like real data).
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        out[i] = UInt8(truncatingIfNeeded: x)
    }
    return out
}

/// Registers `id` with the fake API's dataset kind, its csv_url `path` on nginx (an `ext-` job).
func addExternal(_ inst: Installation, _ nginx: Nginx, _ id: String, _ path: String) throws {
    try FileIO.writeAtomically(inst.dataDir + "/\(id).url", Array((nginx.base + path).utf8))
    #expect(try inst.ctl(["add", "dataset", id]).status == 0)
}

/// A field of nginx's access log line (empty when the request had no such header).
func logField(_ line: String, _ name: String) -> String {
    line.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) } ?? ""
}
