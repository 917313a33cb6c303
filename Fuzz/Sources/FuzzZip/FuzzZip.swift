// ZipExtractor.extract over a downloaded archive. Each input is written to a
// per-process scratch directory and extracted into a fresh, empty `out`
// beside it, which is then removed. Errors are fine; what must hold:
//   - nothing is created outside `out`: every directory from the scratch
//     root down to `out`'s parent holds only what this harness put there
//     (four levels, so an escape of up to four `..` is caught here rather
//     than landing elsewhere under $TMPDIR);
//   - no symbolic link left in `out` resolves to a place outside it (the
//     published directory must not lead a reader out of the job).
import Glibc
import JobFetchArtifacts
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzZip_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzZip_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

let root: String = {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(base)/jobfetch-fuzz-zip.XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { preconditionFailure("mkdtemp under \(base) failed: errno \(errno)") }
    let path = String(cString: made)
    do { try FileIO.makeDirectories(path + "/a/b/c") } catch { preconditionFailure("\(error)") }
    atexit { removeScratch() }
    return path
}()
let work: String = root + "/a/b/c"
let archive: String = work + "/in.zip"
let out: String = work + "/out"
/// What each level may hold.
let expected: [(String, [String])] = [(root, ["a"]), (root + "/a", ["b"]), (root + "/a/b", ["c"]), (work, ["in.zip", "out"])]
/// FUZZ_VERBOSE=1: print what each input gave (to check that the seeds get somewhere).
let verbose = getenv("FUZZ_VERBOSE") != nil
/// Documents published beside the artifacts, which an entry may not replace.
let reserved: Set<String> = ["status.json", "response.json"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    writeArchive(UnsafeRawBufferPointer(start: data, count: size))
    do { try FileIO.makeDirectories(out) } catch { preconditionFailure("\(error)") }

    if verbose {
        do { print("extracted:", try ZipExtractor.extract(archive, into: out, limit: 8 << 20, maxRatio: 100, reserved: reserved)) } catch {
            print("refused:", error)
        }
    } else {
        _ = try? ZipExtractor.extract(archive, into: out, limit: 8 << 20, maxRatio: 100, reserved: reserved)
    }

    for (dir, names) in expected {
        let found = (try? FileIO.list(dir)) ?? []
        precondition(found == names, "the zip extraction created \(found.filter { !names.contains($0) }) in \(dir), outside \(out)")
    }
    checkLinks(under: out, inside: resolved(out) ?? out)
    do { try FileIO.removeTree(out) } catch { preconditionFailure("cannot remove \(out): \(error)") }
    return 0
}

/// At exit (libFuzzer's ends of run call exit): the scratch directory goes. After a crash it stays, for a look.
func removeScratch() { try? FileIO.removeTree(root) }

func writeArchive(_ bytes: UnsafeRawBufferPointer) {
    _ = unlink(archive)
    let fd = open(archive, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot create \(archive): errno \(errno)")
    defer { close(fd) }
    do { try FileIO.writeAll(fd: fd, bytes, path: archive) } catch { preconditionFailure("\(error)") }
}

func resolved(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// Walks `dir` without following links; every link that resolves must stay under `inside`.
func checkLinks(under dir: String, inside: String) {
    for name in (try? FileIO.list(dir)) ?? [] {
        let path = dir + "/" + name
        var st = stat()
        guard lstat(path, &st) == 0 else { continue }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            checkLinks(under: path, inside: inside)
        case S_IFLNK:
            // A dangling link (or a loop) leads nowhere; one that resolves must stay inside.
            if let target = resolved(path) {
                precondition(target == inside || target.utf8.starts(with: (inside + "/").utf8),
                             "link \(path) in the extracted archive resolves to \(target), outside \(inside)")
            }
        default:
            break
        }
    }
}
