/// What became of a downloaded `.part` once the decompressor that followed
/// it finished: the artifact as it is (hashed), inflated, or extracted; or
/// why not.
public enum DecodeOutcome: Sendable, Equatable {
    /// Not gzip, zlib or (by header) deflate: the part is the artifact.
    case notCompressed(bytes: Int64, sha256: String)
    case inflated(bytes: Int64, sha256: String)
    /// A zip archive, extracted (paths checked, links left out with a warning) into the staging directory.
    case extracted(ExtractedFiles)
    /// The data is bad (truncated, corrupt, a bomb): the job fails.
    case failed(String)
    /// The output could not be written (disk full…): the job waits and retries.
    case writeFailed(String)
}

/// The files a zip archive was extracted to, and what was left out.
public struct ExtractedFiles: Sendable, Equatable {
    public var files: [PublishedFile] = []
    public var warnings: [String] = []

    public init(files: [PublishedFile] = [], warnings: [String] = []) {
        self.files = files
        self.warnings = warnings
    }
}

/// One published file, as `job.json` lists it.
public struct PublishedFile: Sendable, Equatable {
    public var name: String
    public var bytes: Int64
    public var sha256: String
    /// The URL it came from, without query string (signatures) or user info.
    public var source: String?

    public init(name: String, bytes: Int64, sha256: String, source: String? = nil) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
        self.source = source
    }
}
