import Foundation
import Glibc
import ZIPFoundation

/// Extracts a zip archive into a job's directory with ZIPFoundation, every
/// entry checked first: no absolute path, no `..`, no backslash or control
/// character, no link that leaves the directory, no entry written twice or
/// through a link (`O_EXCL | O_NOFOLLOW`). Sizes are counted as the data is
/// inflated (headers can lie), CRCs are checked, and each file is hashed
/// on the way, so the digests are ready for `job.json`.
public enum ZipExtractor {
    /// Bad data fails the job; a write problem (disk full) is retried.
    public enum Failure: Error, Sendable {
        case bad(String)
        case write(String)
    }

    /// `PK\3\4` (an archive with entries) or `PK\5\6` (an empty one).
    public static func isZip(_ head: [UInt8]) -> Bool {
        head.count >= 4 && head[0] == 0x50 && head[1] == 0x4B && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))
    }

    /// A safe relative path for `entry`, or why there is none. A first
    /// component that is `job.json` or one of `reserved` gets `artifact-`.
    public static func safePath(_ entry: String, reserved: Set<String>) -> Result<String, JobFetchError> {
        var path = entry
        while path.hasSuffix("/") { path.removeLast() }
        let quoted = JobID.quoted(entry)
        guard !path.isEmpty else { return .failure(JobFetchError("entry \(quoted) has an empty name")) }
        guard !path.hasPrefix("/") else { return .failure(JobFetchError("entry \(quoted) is an absolute path")) }
        guard !path.contains("\\") else { return .failure(JobFetchError("entry \(quoted) contains a backslash")) }
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            return .failure(JobFetchError("entry \(quoted) contains a control character"))
        }
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for p in parts where p.isEmpty || p == "." || p == ".." {
            return .failure(JobFetchError("entry \(quoted) has a \"\(p.isEmpty ? "//" : p)\" component: it could leave the job directory"))
        }
        if parts[0] == "job.json" || reserved.contains(parts[0]) || parts[0].hasPrefix(".") { parts[0] = "artifact-" + parts[0] }
        return .success(parts.joined(separator: "/"))
    }

    /// True when `target`, a link at `linkPath` (relative to the root), stays inside the root.
    static func staysInside(linkPath: String, target: String) -> Bool {
        guard !target.hasPrefix("/") else { return false }
        var stack = linkPath.split(separator: "/").dropLast().map(String.init)
        for p in target.split(separator: "/") where p != "." && !p.isEmpty {
            if p == ".." {
                guard !stack.isEmpty else { return false }
                stack.removeLast()
            } else {
                stack.append(String(p))
            }
        }
        return true
    }

    public static func extract(_ archivePath: String, into dir: String, limit: Int64, maxRatio: Double,
                               reserved: Set<String>) throws(Failure) -> [PublishedFile] {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: archivePath), accessMode: .read) } catch {
            throw .bad("the zip archive cannot be read: \(error)")
        }
        let archiveSize = FileIO.size(archivePath) ?? 1
        var total: Int64 = 0
        var files: [PublishedFile] = []
        for entry in archive {
            let relative: String
            switch safePath(entry.path, reserved: reserved) {
            case .success(let p): relative = p
            case .failure(let e): throw .bad("unsafe zip archive: \(e.message)")
            }
            let target = dir + "/" + relative
            do { try FileIO.makeDirectories(FileIO.parent(target)) } catch { throw .write(error.description) }
            switch entry.type {
            case .directory:
                do { try FileIO.makeDirectories(target) } catch { throw .write(error.description) }
            case .symlink:
                var linkTarget = Data()
                do { _ = try archive.extract(entry, skipCRC32: false) { linkTarget.append($0) } } catch {
                    throw .bad("zip entry \(JobID.quoted(entry.path)) cannot be read: \(error)")
                }
                let text = String(decoding: linkTarget, as: UTF8.self)
                guard staysInside(linkPath: relative, target: text) else {
                    throw .bad("unsafe zip archive: link \(JobID.quoted(entry.path)) points outside the job directory (\(JobID.quoted(text)))")
                }
                guard symlink(text, target) == 0 else { throw .write(SystemError("symlink", target).description) }
            case .file:
                let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
                guard fd >= 0 else {
                    if errno == EEXIST { throw .bad("zip entry \(JobID.quoted(entry.path)) appears twice in the archive") }
                    throw .write(SystemError("create", target).description)
                }
                defer { close(fd) }
                let sha: SHA256Stream
                do { sha = try SHA256Stream() } catch { throw .write(error.description) }
                var failure: Failure?
                let crc: CRC32
                do {
                    crc = try archive.extract(entry, skipCRC32: false) { data in
                        total += Int64(data.count)
                        if total > limit {
                            failure = .bad("the zip archive's contents exceed max_output_size (\(Units.formatBytes(limit))): a decompression bomb?")
                        } else if total > InflateStream.ratioFloor && Double(total) > maxRatio * Double(archiveSize) {
                            failure = .bad("the zip archive's contents are more than \(Int(maxRatio)) times its size: a decompression bomb?")
                        }
                        if let failure { throw failure }
                        var writeError: SystemError?
                        data.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
                            do throws(SystemError) {
                                try FileIO.writeAll(fd: fd, b, path: target)
                                sha.update(b)
                            } catch { writeError = error }
                        }
                        if let writeError {
                            let e = Failure.write(writeError.description)
                            failure = e
                            throw e
                        }
                    }
                } catch {
                    throw failure ?? .bad("zip entry \(JobID.quoted(entry.path)) cannot be extracted: \(error)")
                }
                guard crc == entry.checksum else {
                    throw .bad("zip entry \(JobID.quoted(entry.path)) is corrupt: its CRC-32 does not match")
                }
                files.append(PublishedFile(name: relative, bytes: sha.bytes, sha256: sha.finish(), source: nil))
            }
        }
        return files
    }
}
