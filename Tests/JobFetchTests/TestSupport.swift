import Foundation
import Glibc
@testable import JobFetchCore

/// A fresh temporary directory, removed by the caller's `defer`.
func makeTempDir(_ label: String = "jobfetch") -> String {
    var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return p.map { String(cString: $0) } ?? "/tmp/\(label)-\(getpid())"
}

func fixture(_ path: String) throws -> [UInt8] {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    return try FileIO.readAll(dir.path + "/Fixtures/" + path)
}

func write(_ path: String, _ text: String) throws {
    try FileIO.writeAtomically(path, Array(text.utf8))
}
