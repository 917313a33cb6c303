import Glibc

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
    /// Hooks and webhooks for every kind (a kind's own keys win).
    public var hooks = HookSettings()
    /// Hooks running at once, and webhook deliveries in flight at once.
    public var maxHooks = 2
    /// Where jobs live: SQLite in `state_dir`, or a PostgreSQL database several daemons share.
    public var store = StoreSetting.sqlite
    /// This daemon's name among those sharing a PostgreSQL store (default: the host name).
    public var nodeName = DaemonSettings.hostName
    /// How long a claimed job stays this daemon's without a renewal (PostgreSQL).
    public var lease: Double = 30

    public init() {}

    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    public var databasePath: String { stateDir + "/jobfetchd.sqlite" }
}

/// `store =`: the embedded SQLite database, or a PostgreSQL connection URI
/// (its password through a secret reference, resolved at each connection).
public enum StoreSetting: Sendable, Equatable {
    case sqlite
    /// `uri` as written (secrets unresolved); `label` is what messages show: no password.
    case postgresql(uri: SecretTemplate, label: String)

    public var isShared: Bool { if case .postgresql = self { return true } else { return false } }
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
    /// What runs after the kind's jobs are published: its own keys over the `[daemon]` ones.
    public var hooks = HookSettings()
    /// Where in the file the section starts, for messages.
    public var line: Int

    public func statusURL(for id: JobID) throws(JobFetchError) -> ParsedURL {
        try ParsedURL(statusURL.substituting("{id}", with: id.rawValue))
    }
}

/// What runs after a job's directory is published: `on_complete` (a
/// program) and `notify_url` (a signed POST of `job.json`), set in
/// `[daemon]` for every kind or in a kind's section.
public struct HookSettings: Sendable, Equatable {
    /// The program and its arguments, run with no shell; nil: none.
    public var onComplete: [String]?
    public var notifyURL: ParsedURL?
    /// The HMAC key of `X-Jobfetch-Signature`, read at each delivery.
    public var notifySecret: SecretTemplate?
    public var timeout: Double?
    public var retries: Int?

    public static let defaultTimeout = 300.0
    public static let defaultRetries = 3

    public init() {}

    /// The hook is killed after this long.
    public var hookTimeout: Double { timeout ?? Self.defaultTimeout }
    /// Runs (and deliveries) after the first that a failure may bring.
    public var hookRetries: Int { retries ?? Self.defaultRetries }

    /// These settings, each one not set taken from `defaults` (the `[daemon]` section's).
    public func over(_ defaults: HookSettings) -> HookSettings {
        var h = self
        h.onComplete = onComplete ?? defaults.onComplete
        h.notifyURL = notifyURL ?? defaults.notifyURL
        h.notifySecret = notifySecret ?? defaults.notifySecret
        h.timeout = timeout ?? defaults.timeout
        h.retries = retries ?? defaults.retries
        return h
    }
}
