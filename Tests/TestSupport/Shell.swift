import Foundation

/// Runs a shell command (a tool the tests compare against: gzip, sha256sum…);
/// returns its exit status. Shared by the unit and end-to-end tests.
@discardableResult
public func shell(_ command: String) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    do { try p.run() } catch { return -1 }
    p.waitUntilExit()
    return p.terminationStatus
}
