import Logging

/// What can happen to a job: the machine's input. The shell (the engine, or
/// the simulator) turns curl answers, decompressor results, operator
/// requests and the clock into these.
public enum JobEvent: Sendable {
    /// The job's `next_at` has come: start what its state calls for.
    case due(DueFacts)
    /// The status endpoint answered (or the request failed: `response.error`).
    case pollAnswered(url: ParsedURL, hop: Int, response: HTTPResponse)
    /// A page of a paged result answered.
    case pageAnswered(url: ParsedURL, hop: Int, response: HTTPResponse)
    /// A download ended, whole or not.
    case transferFinished(url: ParsedURL, hop: Int, response: HTTPResponse)
    /// The decompressor that followed a whole download has drained.
    case decodeFinished(url: ParsedURL, response: HTTPResponse, bytes: Int64, outcome: DecodeOutcome)
    /// Publishing found the staged result gone: it is downloaded again.
    case resultMissing
    /// The job's directory is in the output directory.
    case published(path: String, recovered: Bool)
    /// An effect that can fail did (`JobEffect.canFail`); the effects after it
    /// were not carried out, and the record is as it was when it was planned.
    case effectFailed(JobEffect, problem: String)
    /// `.start` found no `rate_limit` token: one is free in `wait` seconds
    /// (the effects after it were not carried out).
    case noToken(wait: Double)
    /// An operator's `cancel`; `inFlight` describes the request that would be stopped.
    case cancelRequested(inFlight: String?)
    /// An operator's `retry`.
    case retryRequested
    /// Once a second while a download runs: bytes so far, the expected
    /// length, and the rate since the last sample (the machine smooths it).
    case progressed(bytes: Int64, total: Int64?, rate: Double?)
    /// The job's `timeout` passed while its result was transferring.
    case deadlinePassed(bytesDone: Int64)
    /// The job was at hand at two crashes since the last clean stop.
    case crashedTwice(signal: Int32?)
}

/// What the shell looked up for a due job (only what its state needs).
public struct DueFacts: Sendable, Equatable {
    /// Free bytes on the output filesystem (a download about to start).
    public var freeSpace: Int64?
    /// The paged result file's length on disk (a page about to be fetched).
    public var pagesFileSize: Int64?
    /// Where the job's directory already is, published with this
    /// `finished_at` (a job found in `publishing` after an unclean stop).
    public var alreadyPublished: String?

    public init(freeSpace: Int64? = nil, pagesFileSize: Int64? = nil, alreadyPublished: String? = nil) {
        self.freeSpace = freeSpace
        self.pagesFileSize = pagesFileSize
        self.alreadyPublished = alreadyPublished
    }
}

/// One request the machine wants sent.
public struct JobRequest: Sendable, Equatable {
    public enum Purpose: Sendable, Equatable {
        case poll
        /// One page of a paged result (counted with downloads).
        case page(offset: Int)
        /// The result itself, into the staging directory's `.part`.
        case transfer
    }

    public var key: JobKey
    public var purpose: Purpose
    public var url: ParsedURL
    /// Redirects followed so far (each hop is a request of its own).
    public var hop: Int
    /// The kind's `header`s go with it: only to the status endpoint's origin.
    public var credentials: Bool
    /// Takes a token from the kind's `rate_limit` first (the first hop of a poll or a page).
    public var takesToken: Bool
    /// For messages: "status request", "page request at offset 0".
    public var what: String

    public var isPoll: Bool { purpose == .poll }
    /// Downloads and pages share `max_downloads`; polls have `max_polls`.
    public var usesDownloadSlot: Bool { !isPoll }

    /// How a cancel names it.
    public var described: String {
        switch purpose {
        case .poll: "status request"
        case .page: "page request"
        case .transfer: "download of \(url.redacted)"
        }
    }
}

/// What the machine asks the shell to do. Effects are carried out in order;
/// one that can fail (`canFail`) and does stops the rest, and the machine
/// hears of it as `.effectFailed`.
public enum JobEffect: Sendable {
    /// Write the record (the one it carries) with an optional history line.
    case save(JobRecord, event: String?)
    case log(Logger.Level, String)
    /// Warn once per (kind, status) that the mapping does not know a status.
    case warnUnknownStatus(kind: String, status: String)
    /// The job's kind is not in the configuration: warn once per kind.
    case kindMissing(String)
    /// Send a request (can fail: not startable, or no `rate_limit` token).
    case start(JobRequest)
    /// Stop the job's request in flight, if any.
    case abort
    /// A fresh staging directory (a partial download stays) holding the
    /// documents to publish and an inline result (can fail).
    case stage(documents: [PublishedDocument], inline: String?)
    /// A failed or cancelled job's staging directory holds nothing.
    case clearStaging
    /// A download waits for disk space (the shell says so now and then, not every time).
    case lowDiskSpace(String)
    /// The paged result file cut back to the last recorded page boundary (can fail).
    case truncatePages(file: String, bytes: Int64)
    /// Items appended to the paged result file and fsynced (can fail).
    case appendPage(file: String, bytes: [UInt8])
    /// The partial download is worthless: it and its sidecar go.
    case discardPart
    /// Wait for the decompressor of a whole download to drain.
    case awaitDecode(url: ParsedURL, response: HTTPResponse, bytes: Int64)
    /// Give the artifact its name in the staging directory (can fail).
    case nameArtifact(NamedArtifact)
    /// Publish the staging directory with `job.json` (answers `.published`,
    /// `.resultMissing`, or fails).
    case publish(JobRecord)
    /// The job was already published before an unclean stop: what is left in staging goes.
    case removeStaging
    case count(MetricEvent)
    /// The job's hook or webhook is pending, committed with its outcome: the runner may take it.
    case deliver

    /// Effects whose failure the machine must hear of.
    public var canFail: Bool {
        switch self {
        case .start, .stage, .truncatePages, .appendPage, .nameArtifact, .publish: true
        default: false
        }
    }
}

/// How a whole artifact becomes a named file.
public struct NamedArtifact: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// The decompressor's output (`.artifact.out`).
        case inflated
        /// The download itself (`.artifact.part`).
        case part
        /// Already in place (a zip's members).
        case extracted
    }

    public var source: Source
    public var name: String
    /// What publishing can trust without reading the files again.
    public var files: [PublishedFile]
}

/// What `metrics_file` counts.
public enum MetricEvent: Sendable, Equatable {
    case poll(kind: String, status: Int)
    case downloaded(kind: String, bytes: Int64)
    case transferFailed(kind: String)
    case publishFailed(kind: String)
    case finished(kind: String, outcome: Outcome)
}
