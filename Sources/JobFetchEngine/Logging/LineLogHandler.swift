import Glibc
import Logging
import Synchronization
import JobFetchCore

/// One line per event on stderr. Under journald (`JOURNAL_STREAM` set) each
/// line starts with its syslog priority (`<6>`), which journald reads; on a
/// terminal or in a file each line starts with a UTC timestamp and the level.
/// The job, when there is one, is shown as `kind/id` (metadata key `job`).
/// Callers never put secrets in messages: URLs are logged redacted. Every
/// message is escaped and cut (`ServerText.shown`): it may quote server text.
public struct LineLogHandler: LogHandler {
    /// The level threshold, shared by every logger so SIGHUP can change it.
    public static let threshold = Atomic<Int>(levelRank(.info))

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level {
        get { Self.level(rank: Self.threshold.load(ordering: .relaxed)) }
        set { Self.threshold.store(Self.levelRank(newValue), ordering: .relaxed) }
    }
    let label: String
    let journald: Bool

    public init(label: String, journald: Bool) {
        self.label = label
        self.journald = journald
    }

    /// Installs this handler as the process-wide logging backend.
    public static func bootstrap(level: LogLevelName) {
        let journald = getenv("JOURNAL_STREAM") != nil
        LoggingSystem.bootstrap { LineLogHandler(label: $0, journald: journald) }
        setLevel(level)
    }

    public static func setLevel(_ level: LogLevelName) {
        let l: Logger.Level = switch level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
        threshold.store(levelRank(l), ordering: .relaxed)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level, message = event.message
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        var text = ""
        if journald {
            text = "<\(Self.syslogPriority(level))>"
        } else {
            text = Self.timestamp() + " " + level.rawValue.uppercased() + " "
        }
        if let job = all.removeValue(forKey: "job") { text += "\(job): " }
        text += ServerText.shown(message.description, limit: Self.maxMessageBytes)
        if !all.isEmpty {
            text += " (" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\(ServerText.shown("\($0.value)"))" }.joined(separator: ", ") + ")"
        }
        text += "\n"
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { b in
            var off = 0
            while off < b.count {
                let n = Syscall.uninterrupted { write(2, b.baseAddress! + off, b.count - off) }
                if n <= 0 { return }
                off += n
            }
        }
    }

    /// One event is one line of bounded length: a message may quote server
    /// text, so it is cut here too (a newline would split it into several
    /// journal entries, an escape sequence would drive the reader's terminal).
    static let maxMessageBytes = 4096

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func levelRank(_ l: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: l) ?? 2 }
    static func level(rank: Int) -> Logger.Level { Logger.Level.allCases[max(0, min(rank, Logger.Level.allCases.count - 1))] }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tmv = tm()
        var t = ts.tv_sec
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S", &tmv)
        let ms = Int(ts.tv_nsec / 1_000_000)
        let base = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return base + "." + (ms < 10 ? "00" : ms < 100 ? "0" : "") + "\(ms)Z"
    }
}

extension Logger {
    /// Metadata naming a job as `kind/id`.
    public static func job(_ key: JobKey) -> Logger.Metadata { ["job": "\(key)"] }
}
