import CLinux
import Foundation
import Glibc
import ZIPFoundation
import JobFetchCore

/// Extracts a zip archive into a job's directory with ZIPFoundation, every
/// entry checked first: no absolute path, no `..`, no backslash or control
/// character, no entry written twice. Link entries are never created (each
/// is a warning), and every directory and file is created relative to the
/// job directory's descriptor with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)`, so nothing can be written outside it. Sizes are counted as the data is
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

    /// An entry's path at most this long in bytes.
    static let maxPathBytes = 1024
    /// A component at most this long in bytes: NAME_MAX with room for `artifact-`.
    static let maxComponentBytes = Int(NAME_MAX) - "artifact-".utf8.count

    /// A safe relative path for `entry`, or why there is none. A first
    /// component that is `job.json` or one of `reserved` gets `artifact-`.
    /// Works on Unicode scalars, as the kernel works on bytes: to Swift, `/`
    /// or `.` followed by a combining mark is another Character, which hid a
    /// `..` component or an absolute path from a Character-based check
    /// (found by fuzzing; openat2 still kept such an entry inside).
    public static func safePath(_ entry: String, reserved: Set<String>) -> Result<String, JobFetchError> {
        var path = entry.unicodeScalars[...]
        while path.last == "/" { path.removeLast() }
        let quoted = JobID.quoted(entry)
        guard !path.isEmpty else { return .failure(JobFetchError("entry \(quoted) has an empty name")) }
        guard path.first != "/" else { return .failure(JobFetchError("entry \(quoted) is an absolute path")) }
        guard !path.contains("\\") else { return .failure(JobFetchError("entry \(quoted) contains a backslash")) }
        guard !path.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            return .failure(JobFetchError("entry \(quoted) contains a control character"))
        }
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
        for p in parts where p.isEmpty || p == "." || p == ".." {
            return .failure(JobFetchError("entry \(quoted) has a \"\(p.isEmpty ? "//" : p)\" component: it could leave the job directory"))
        }
        // Longer names could not be created (NAME_MAX), or listed, hashed and
        // removed by path below an output directory (PATH_MAX, 4096).
        for p in parts where p.utf8.count > Self.maxComponentBytes {
            return .failure(JobFetchError("entry \(quoted) has a name component of \(p.utf8.count) bytes (at most \(Self.maxComponentBytes))"))
        }
        let bytes = parts.reduce(parts.count - 1) { $0 + $1.utf8.count }
        guard bytes <= Self.maxPathBytes else {
            return .failure(JobFetchError("entry \(quoted) has a path of \(bytes) bytes (at most \(Self.maxPathBytes))"))
        }
        if parts[0] == "job.json" || reserved.contains(parts[0]) || parts[0].unicodeScalars.first == "." { parts[0] = "artifact-" + parts[0] }
        return .success(parts.joined(separator: "/"))
    }

    /// What an archive gave: the files written, and a warning for each entry
    /// left out (a link: none is ever created).

    /// Opens (creating as needed) the directory `relative` below `root`, one
    /// component at a time, each resolved by the kernel beneath its parent
    /// with no symbolic link followed: no earlier entry can redirect a later one.
    static func openDirectory(_ relative: String, beneath root: Int32) throws(SystemError) -> Int32 {
        var fd = dup(root)
        guard fd >= 0 else { throw SystemError("dup", relative) }
        for part in relative.unicodeScalars.split(separator: "/") {
            let name = String(String.UnicodeScalarView(part))
            var next = jf_open_beneath(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
            if next < 0 && errno == ENOENT {
                if mkdirat(fd, name, 0o755) != 0 && errno != EEXIST {
                    let e = SystemError("mkdir", relative)
                    close(fd)
                    throw e
                }
                next = jf_open_beneath(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
            }
            let e = errno
            close(fd)
            guard next >= 0 else { throw SystemError("open", relative, errno: e) }
            fd = next
        }
        return fd
    }

    public static func extract(_ archivePath: String, into dir: String, limit: Int64, maxRatio: Double,
                               reserved: Set<String>) throws(Failure) -> ExtractedFiles {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: archivePath), accessMode: .read) } catch {
            throw .bad("the zip archive cannot be read: \(error)")
        }
        let root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { throw .write(SystemError("open", dir).description) }
        defer { close(root) }
        let archiveSize = FileIO.size(archivePath) ?? 1
        var total: Int64 = 0
        var out = ExtractedFiles()
        for entry in archive {
            let relative: String
            switch safePath(entry.path, reserved: reserved) {
            case .success(let p): relative = p
            case .failure(let e): throw .bad("unsafe zip archive: \(e.message)")
            }
            let target = dir + "/" + relative
            // Every entry is created through descriptors beneath `root`; a path
            // that would leave it, or cross a link, is refused by the kernel.
            func beneathFailure(_ error: SystemError) -> Failure {
                if error.errno == ENAMETOOLONG { return .bad("unsafe zip archive: entry \(JobID.quoted(entry.path)) is too long a path to create (\(error))") }
                return [EXDEV, ELOOP, ENOTDIR, EEXIST].contains(error.errno)
                    ? .bad("unsafe zip archive: entry \(JobID.quoted(entry.path)) would be written through a link or outside the job directory (\(error))")
                    : .write(error.description)
            }
            let parentFD: Int32
            do { parentFD = try openDirectory(FileIO.parent(relative) == "." ? "" : FileIO.parent(relative), beneath: root) } catch {
                throw beneathFailure(error)
            }
            defer { close(parentFD) }
            switch entry.type {
            case .directory:
                do { close(try openDirectory(FileIO.basename(relative), beneath: parentFD)) } catch { throw beneathFailure(error) }
            case .symlink:
                // A link is never created: read through later entries or by
                // a consumer, a chain of links can point anywhere. Its target
                // is not even read: ZIPFoundation reads a link entry in one
                // piece of the size its header claims (3 GB, found by fuzzing).
                out.warnings.append("zip entry \(JobID.quoted(entry.path)) is a symbolic link; links are not extracted")
            case .file:
                let fd = jf_open_beneath(parentFD, FileIO.basename(relative), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
                guard fd >= 0 else {
                    if errno == EEXIST { throw .bad("zip entry \(JobID.quoted(entry.path)) appears twice in the archive") }
                    throw beneathFailure(SystemError("create", target))
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
                out.files.append(PublishedFile(name: relative, bytes: sha.bytes, sha256: sha.finish(), source: nil))
            }
        }
        return out
    }
}
