
/// The daemon's configuration, as read from `daemon.conf`.
public struct Config: Sendable {
    public var file: String
    public var daemon: DaemonSettings
    /// Kinds in the order the file defines them.
    public var kinds: [KindConfig]
    /// Not errors, but worth an operator's eye (`--check-config` prints them, the daemon logs them).
    public var warnings: [ConfigProblem] = []

    public func kind(_ name: String) -> KindConfig? { kinds.first { $0.name == name } }
}

public enum LogLevelName: String, Sendable, CaseIterable {
    case debug, info, notice, warning, error
}

public struct DaemonSettings: Sendable, Equatable {
    public var spoolDir = "/var/spool/jobfetchd"
    public var stateDir = "/var/lib/jobfetchd"
    public var outputDir = "/var/lib/jobfetchd/output"
    public var maxDownloads = 4
    public var maxPolls = 32
    public var logLevel = LogLevelName.info
    public var maxArtifactSize: Int64 = 64 << 30
    public var maxOutputSize: Int64 = 256 << 30
    public var minFreeSpace: Int64 = 1 << 30
    /// Decompressed output may be at most this many times the download (bombs).
    public var maxCompressionRatio: Double = 250
    public var metricsFile: String?
    /// Connections to one host at a time (status requests and downloads).
    public var maxHostConnections = 8
    public var connectTimeout: Double = 15
    /// A download slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` stops (and resumes later).
    public var lowSpeedLimit: Int64 = 1024
    public var lowSpeedTime: Double = 60
    /// Connections one artifact is fetched over (1: one stream); a kind may override.
    public var segments = 4
    /// Artifacts smaller than this are fetched over one connection.
    public var segmentMinSize: Int64 = 64 << 20
    /// A download is split only when its first connection brings fewer bytes
    /// per second than this (a fast connection is not what limits it).
    public var segmentBelowRate: Int64 = 100 << 20
    /// Retention (off when nil): published directories of finished jobs are
    /// removed this long after they finished, and the jobs themselves (with
    /// their history) are forgotten after `forgetAfter`.
    public var keepResults: Double?
    public var forgetAfter: Double?

    public init() {}

    public var databasePath: String { stateDir + "/jobfetchd.sqlite" }
}

public struct RateLimit: Sendable, Equatable {
    public var requests: Double
    public var per: Double
    public var perSecond: Double { requests / per }
}

public struct KindConfig: Sendable {
    public var name: String
    public var preset: String
    /// The status URL with `{id}` still in it.
    public var statusURL: String
    public var headers: [SecretTemplate]
    public var pollInterval: Double
    public var maxPollInterval: Double
    public var timeout: Double
    public var rateLimit: RateLimit?
    public var notFoundGrace: Double
    public var allowInsecureHTTP: Bool
    public var mapping: StatusMapping
    /// `segments` for this kind's downloads; nil: the daemon's.
    public var segments: Int?
    /// Where in the file the section starts, for messages.
    public var line: Int

    public func statusURL(for id: JobID) throws(JobFetchError) -> ParsedURL {
        try ParsedURL(statusURL.substituting("{id}", with: id.rawValue))
    }
}
