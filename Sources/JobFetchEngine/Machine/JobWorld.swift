import Logging
import JobFetchCore

/// The I/O a `JobDriver` carries the machine's effects out with: requests,
/// the staging directory, publishing. The daemon's is `SystemWorld`
/// (libcurl, files); the simulator's keeps everything in memory and
/// injects faults. Methods that can fail throw a message the machine turns
/// into a retry or a failure.
public protocol JobWorld: AnyObject {
    /// Sends a request (with the kind's headers if `request.credentials`); returns its tag.
    func start(_ request: JobRequest, record: JobRecord, kind: KindConfig) throws(JobFetchError) -> Int
    /// Stops a request; `checkpoint` (at shutdown) records a download's part so the next start resumes it.
    /// Returns the bytes on disk of a checkpointed download.
    @discardableResult
    func cancel(_ tag: Int, checkpoint: Bool) -> Int64?
    /// Bytes so far and the expected length of a download in flight.
    func progress(_ tag: Int) -> (bytes: Int64, total: Int64?)?
    /// What a due job in `record.state` needs looked up.
    func facts(for record: JobRecord, kind: KindConfig?) -> DueFacts
    func stage(_ key: JobKey, documents: [PublishedDocument], inline: String?) throws(JobFetchError)
    func clearStaging(_ key: JobKey)
    func truncatePages(_ key: JobKey, file: String, bytes: Int64) throws(JobFetchError)
    func appendPage(_ key: JobKey, file: String, bytes: [UInt8]) throws(JobFetchError)
    func discardPart(_ key: JobKey)
    /// The download is whole: its decompressor drains what is left. False
    /// when it has none (it was lost).
    func awaitDecode(_ key: JobKey, bytes: Int64) -> Bool
    /// The decompressors that have drained since the last call.
    func finishedDecodes(among keys: Set<JobKey>) -> [(JobKey, DecodeOutcome)]
    /// A download ended some other way: its decompressor stops and its output goes.
    func dropDecoder(_ key: JobKey)
    func nameArtifact(_ key: JobKey, _ artifact: NamedArtifact) throws(JobFetchError)
    func publish(_ record: JobRecord, kind: KindConfig?) -> PublishAnswer
    /// Where the job's directory is published if it already is with the record's `finished_at`.
    func removeStaging(_ key: JobKey)
    /// Runs `body` with `key` noted as the job at hand (the crash guard).
    func handling(_ key: JobKey, _ body: () -> Void)
}

public enum PublishAnswer: Sendable {
    case published(path: String)
    /// The staged download is gone.
    case resultMissing
    case failed(String)
}
