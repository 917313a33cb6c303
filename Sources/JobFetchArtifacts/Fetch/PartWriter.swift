import CLinux
import Glibc
import JobFetchCore

/// Writes a download's body into its `.part` file, continuing where
/// `PartSidecar.resume` says the file is good, and checkpoints on a bounded
/// schedule: the bytes are flushed (`sync_file_range`, waited for) and only
/// then is the sidecar's `synced` advanced, so a power cut loses at most the
/// bytes of two intervals (a kill on the same boot loses nothing that was
/// written). Runs on the engine thread inside libcurl's write callback.
package final class PartWriter {
    let path: String
    package let limit: Int64
    /// The part as it was when this request was made and the offset the
    /// request continues it from (nil: a fresh download).
    package let resume: PartSidecar.Resume?
    private(set) var fd: Int32 = -1
    /// Bytes in the file: the resumed prefix plus what arrived.
    package private(set) var size: Int64 = 0
    package private(set) var sidecar: PartSidecar?
    private var hinted: Int64 = 0
    /// The end of the range whose writeback the last checkpoint started.
    private var pending: Int64 = 0
    private var lastCheckpoint = SystemClock.monotonic()
    package var error: SystemError?
    package var tooLarge = false
    /// Why a 206 could not be appended (another range, another object): the
    /// transfer stops and the download restarts from zero.
    package var mismatch: String?

    static let checkpointBytes: Int64 = 16 << 20
    static let checkpointSeconds = 1.0
    /// Writeback of what arrived is started every few MiB, so a checkpoint
    /// rarely has to wait for much.
    static let hintBytes: Int64 = 4 << 20

    let observer: (@Sendable (PartEvent) -> Void)?

    package init(path: String, limit: Int64, resume: PartSidecar.Resume?, observer: (@Sendable (PartEvent) -> Void)?) {
        self.path = path
        self.limit = limit
        self.resume = resume
        self.observer = observer
    }

    deinit { if fd >= 0 { close(fd) } }

    var sidecarPath: String { PartSidecar.path(for: path) }

    /// At the first body byte of a 2xx answer: append to the resumed part
    /// (a 206 that continues exactly where it stopped, for the same object)
    /// or start over (anything else). False stops the transfer.
    package func begin(status: Int, headers: [String: String], url: ParsedURL) -> Bool {
        let etag = headers["etag"], lastModified = headers["last-modified"], encoding = headers["content-encoding"]
        var length: Int64?
        if status == 206 {
            guard let resume else { mismatch = "a 206 answered a request without a range"; return false }
            let old = resume.sidecar
            guard let range = ContentRange.parse(headers["content-range"]), range.start == resume.offset else {
                mismatch = "asked for bytes from \(resume.offset), the server sent \(headers["content-range"] ?? "no Content-Range")"
                return false
            }
            if let e = etag, let was = old.etag, e != was { mismatch = "the ETag changed (\(was) → \(e))"; return false }
            if let t = range.total, let was = old.length, t != was { mismatch = "the length changed (\(was) → \(t))"; return false }
            if encoding != nil { mismatch = "the resumed answer has a Content-Encoding"; return false }
            length = range.total ?? old.length
            fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { error = SystemError("open", path); return false }
            // Whatever lies past the offset may be garbage (after a reboot, past
            // the last checkpoint): cut it, then append.
            guard ftruncate(fd, off_t(resume.offset)) == 0, lseek(fd, off_t(resume.offset), SEEK_SET) >= 0 else {
                error = SystemError("truncate", path); return false
            }
            size = resume.offset
            // The kept bytes past the checkpoint start their writeback now, so the
            // first checkpoint does not wait for all of them at once.
            if resume.offset > old.synced {
                _ = jf_sync_file_range(fd, old.synced, resume.offset - old.synced, UInt32(SYNC_FILE_RANGE_WRITE))
            }
            // Still only `synced` is known to be durable: the first checkpoint
            // flushes from there, the bytes kept from before the restart included.
            sidecar = PartSidecar(url: url.redacted, etag: etag ?? old.etag, lastModified: lastModified ?? old.lastModified,
                                  length: length, synced: old.synced, encoding: nil)
        } else {
            length = headers["content-length"].flatMap { Int64($0) }
            // Told before the file is cut, so a reader of the old bytes starts over.
            observer?(.fresh(encoding: encoding))
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { error = SystemError("open", path); return false }
            size = 0
            sidecar = PartSidecar(url: url.redacted, etag: etag, lastModified: lastModified, length: length, synced: 0, encoding: encoding)
            do { try sidecar?.save(part: path) } catch { self.error = error; return false }
        }
        hinted = size
        pending = size
        // max_artifact_size is checked against the announced length before anything is written.
        if let length, length > limit { tooLarge = true; return false }
        lastCheckpoint = SystemClock.monotonic()
        return true
    }

    package func write(_ data: UnsafeRawBufferPointer) -> Bool {
        if size + Int64(data.count) > limit { tooLarge = true; return false }
        do { try FileIO.writeAll(fd: fd, data, path: path) } catch { self.error = error; return false }
        size += Int64(data.count)
        observer?(.size(size))
        if size - hinted >= Self.hintBytes {
            _ = jf_sync_file_range(fd, hinted, size - hinted, UInt32(SYNC_FILE_RANGE_WRITE))
            hinted = size
        }
        if size - pending >= Self.checkpointBytes || SystemClock.monotonic() - lastCheckpoint >= Self.checkpointSeconds {
            checkpoint()
        }
        return error == nil
    }

    /// Records progress without stalling the transfer: the range written
    /// since the last checkpoint has had one interval to reach the disk (its
    /// writeback was started then); wait for it, advance `synced` to its end
    /// in the sidecar, and start the writeback of what came since. A crash
    /// re-sends at most two intervals.
    func checkpoint() {
        guard fd >= 0, var s = sidecar else { return }
        lastCheckpoint = SystemClock.monotonic()
        if pending > s.synced {
            if jf_sync_file_range(fd, s.synced, pending - s.synced,
                                  UInt32(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)) != 0 {
                guard fdatasync(fd) == 0 else { error = SystemError("fdatasync", path); return }
            }
            s.synced = pending
            do { try s.save(part: path) } catch { self.error = error; return }
            sidecar = s
        }
        if size > pending {
            _ = jf_sync_file_range(fd, pending, size - pending, UInt32(SYNC_FILE_RANGE_WRITE))
            pending = size
            hinted = size
        }
    }

    /// The end of the transfer, whatever it was: what arrived is kept, and
    /// recorded as far as it is known to be on disk. (A whole download is
    /// fsynced when it is published.)
    package func finish(durably: Bool) {
        guard fd >= 0 else { return }
        if durably, var s = sidecar, size > s.synced {
            // Everything that arrived, on disk and recorded.
            if fdatasync(fd) == 0 {
                s.synced = size
                do { try s.save(part: path); sidecar = s } catch { self.error = error }
            } else {
                error = SystemError("fdatasync", path)
            }
        } else {
            checkpoint()
        }
        if error != nil { distrustUnsyncedBytes() }
        close(fd)
        fd = -1
    }

    /// After a failed write or flush the file's length proves nothing: pages
    /// whose writeback failed are dropped clean, and a later read may return
    /// what was on disk before. The sidecar forgets its boot, so the next
    /// resume starts from `synced`, the last flush that succeeded; if even
    /// that cannot be recorded, the part starts over.
    private func distrustUnsyncedBytes() {
        guard var s = sidecar ?? PartSidecar.load(part: path), s.boot != nil else { return }
        s.boot = nil
        do { try s.save(part: path); sidecar = s } catch { PartSidecar.discard(part: path) }
    }
}
