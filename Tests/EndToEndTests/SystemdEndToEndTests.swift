import Foundation
import Glibc
import JobFetchCore
import JobFetchEngine
import Testing
import TestSupport

/// sd_notify as systemd sees it: a datagram socket the test binds, the real
/// daemon told of it through $NOTIFY_SOCKET.
@Suite(.serialized) struct SystemdEndToEndTests {
    /// A bound AF_UNIX datagram socket, read with a deadline.
    final class NotifySocket {
        let fd: Int32
        init(path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw SystemError("socket", path) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
            }
            guard ok else { throw SystemError("bind", path) }
        }
        deinit { close(fd) }

        /// The next datagram, or nil after `timeout` seconds.
        func next(timeout: Double) -> String? {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return nil }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
        }

        /// Reads datagrams until one satisfies `match`.
        func wait(timeout: Double = 30, _ match: (String) -> Bool) -> String? {
            let deadline = SystemClock.monotonic() + timeout
            while SystemClock.monotonic() < deadline {
                guard let m = next(timeout: max(0, deadline - SystemClock.monotonic())) else { return nil }
                if match(m) { return m }
            }
            return nil
        }
    }

    @Test func readyWatchdogStatusAndStopping() throws {
        let inst = try Installation()
        let sock = try NotifySocket(path: inst.root + "/notify.sock")
        #expect(try inst.ctl(["add", "dataset", "done-1000-waiting"]).status == 0)
        // Written a minute ago (files younger than 2 s are left to settle before they are read).
        #expect(shell("touch -d '-1 min' \(inst.spool)/dataset/*") == 0)
        try inst.startDaemon(environment: ["NOTIFY_SOCKET": inst.root + "/notify.sock", "WATCHDOG_USEC": "400000"])
        // READY only once the spool was scanned: the job added while the daemon was down is counted.
        let ready = try #require(sock.wait { $0.contains("READY=1") })
        #expect(ready.contains("STATUS=1 job(s) polling"), "\(ready)")
        // The loop pings the watchdog at half the period (0.2 s), also when idle.
        var pings = 0
        let start = SystemClock.monotonic()
        while pings < 3, let m = sock.wait(timeout: 2, { $0.contains("WATCHDOG=1") }) {
            #expect(m.contains("STATUS="))
            pings += 1
        }
        #expect(pings == 3)
        #expect(SystemClock.monotonic() - start < 2, "three pings in \(SystemClock.monotonic() - start) s")
        inst.daemon?.signal(SIGTERM)
        #expect(sock.wait { $0.contains("STOPPING=1") } != nil)
        #expect(inst.daemon?.waitExit() == 0)
        inst.daemon = nil
    }

    /// `systemctl status` shows the downloads and their summed rate while
    /// they run (nginx sends this one at 2 MiB/s).
    @Test func statusCarriesTheDownloadRate() throws {
        let inst = try Installation()
        let nginx = try Nginx(root: inst.root + "/nginx")
        try FileIO.writeAtomically(nginx.www + "/slow/big.bin", pseudoRandomBytes(8 << 20, seed: 7))
        try FileIO.writeAtomically(inst.dataDir + "/ext-rate.url", Array((nginx.base + "/slow/big.bin").utf8))
        let sock = try NotifySocket(path: inst.root + "/notify.sock")
        try inst.startDaemon(environment: ["NOTIFY_SOCKET": inst.root + "/notify.sock", "WATCHDOG_USEC": "1000000"])
        #expect(try inst.ctl(["add", "dataset", "ext-rate"]).status == 0)
        let status = try #require(sock.wait { $0.contains("1 download(s) in flight over 1 connection(s) at ") })
        let figure = try #require(status.split(separator: " at ").last?.split(separator: "/s").first)
        let mib = figure.hasSuffix(" MiB") ? Double(figure.dropLast(4)) : nil
        #expect(mib.map { (0.5...10).contains($0) } == true, "about nginx's 2 MB/s: \(status)")
        #expect(try inst.waitForResult("ext-rate"))
        #expect(sock.wait { $0.contains("STATUS=") && $0.contains("0 download(s) in flight over 0 connection(s);") } != nil)
    }

    @Test func withoutNotifySocketNothingIsSent() throws {
        #expect(!SystemdNotifier(environment: [:]).isActive)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "10000000"]).watchdogInterval == 5)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"]).watchdogInterval == nil, "another process's watchdog")
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]).isActive)
    }
}
