import CLinux
import Glibc
import JobFetchCore

/// Makes a job's result appear atomically as `<output>/<kind>/<id>/`:
/// built under `<output>/.incoming/<kind>/<id>/`, every file and the
/// directory fsynced, `job.json` written last, then one rename.
public struct Publisher: Sendable {
    public let outputDir: String

    public init(outputDir: String) { self.outputDir = outputDir }

    public func stagingDirectory(_ key: JobKey) -> String { "\(outputDir)/.incoming/\(key.kind)/\(key.id)" }
    public func finalDirectory(_ key: JobKey) -> String { "\(outputDir)/\(key.kind)/\(key.id)" }

    /// An empty staging directory for the job (whatever was there is gone,
    /// except the names in `keeping`).
    public func freshStaging(_ key: JobKey, keeping: Set<String> = []) throws(SystemError) -> String {
        let dir = stagingDirectory(key)
        if keeping.isEmpty || !FileIO.exists(dir) {
            try FileIO.removeTree(dir)
        } else {
            for name in try FileIO.list(dir) where !keeping.contains(name) { try FileIO.removeTree(dir + "/" + name) }
        }
        try FileIO.makeDirectories(dir)
        return dir
    }

    /// True when the job's directory in place is this result (a crash after
    /// the rename and before the store heard of it): its `job.json` carries
    /// the record's `finished_at`. An older result (a retried job) does not.
    public func isPublished(_ key: JobKey, finishedAt: Double?) -> Bool {
        guard let finishedAt, let bytes = try? FileIO.readAll(finalDirectory(key) + "/job.json", limit: 64 << 20),
              let doc = try? JSONParser.parse(bytes) else { return false }
        return doc["finished_at"]?.scalarText == Timestamp.iso8601(finishedAt)
    }

    public struct Manifest: Sendable {
        public var record: JobRecord
        public var outcome: Outcome
        public var files: [PublishedFile]
        public var finishedAt: Double

        package init(record: JobRecord, outcome: Outcome, files: [PublishedFile], finishedAt: Double) {
            self.record = record
            self.outcome = outcome
            self.files = files
            self.finishedAt = finishedAt
        }
    }

    /// Writes `job.json` into the staging directory, makes it durable and
    /// renames it into place. Returns the final directory.
    @discardableResult
    public func publish(_ m: Manifest) throws(SystemError) -> String {
        let key = m.record.key
        let staging = stagingDirectory(key)
        try FileIO.makeDirectories(staging)
        for f in m.files { try FileIO.fsyncFile(staging + "/" + f.name) }
        // Subdirectories (an extracted zip) are made durable too.
        var subdirectories = Set<String>()
        for f in m.files {
            var dir = f.name
            while let slash = dir.lastIndex(of: "/") {
                dir = String(dir[..<slash])
                subdirectories.insert(dir)
            }
        }
        for sub in subdirectories.sorted(by: >) { try FileIO.fsyncDirectory(staging + "/" + sub) }
        let json = JSONWriter.string(Self.jobJSON(m), pretty: true) + "\n"
        try FileIO.writeAtomically(staging + "/job.json", Array(json.utf8))
        let kindDir = "\(outputDir)/\(key.kind)"
        try FileIO.makeDirectories(kindDir)
        let final = finalDirectory(key)
        if FileIO.exists(final) {
            // A retried job replaces its old result: one atomic swap, so a
            // reader sees the old directory or the new one, never neither.
            if jf_rename_exchange(staging, final) == 0 {
                try FileIO.fsyncDirectory(kindDir)
                try FileIO.removeTree(staging)  // now the old result
            } else {
                let why = errno
                guard why == EINVAL || why == ENOSYS else { throw SystemError("rename (exchange)", final, errno: why) }
                // A filesystem without RENAME_EXCHANGE: move the old one aside first.
                let aside = "\(outputDir)/.incoming/\(key.kind)/.old-\(key.id)-\(getpid())"
                try FileIO.removeTree(aside)
                guard rename(final, aside) == 0 else { throw SystemError("rename", final) }
                guard rename(staging, final) == 0 else { throw SystemError("rename", staging) }
                try FileIO.removeTree(aside)
            }
        } else {
            guard rename(staging, final) == 0 else { throw SystemError("rename", staging) }
        }
        try FileIO.fsyncDirectory(kindDir)
        try FileIO.fsyncDirectory(FileIO.parent(staging))
        return final
    }

    public static func jobJSON(_ m: Manifest) -> JSONValue {
        let r = m.record
        var members: [JSONMember] = [
            JSONMember("kind", .string(r.key.kind)),
            JSONMember("id", .string(r.key.id.rawValue)),
            JSONMember("outcome", .string(m.outcome.rawValue)),
        ]
        if m.outcome != .succeeded { members.append(JSONMember("reason", r.reason.map { .string($0) } ?? .null)) }
        members.append(JSONMember("warnings", .array(r.warnings.map { .string($0) })))
        members.append(JSONMember("summary", r.summary.flatMap { try? JSONParser.parse($0) } ?? .null))
        members.append(JSONMember("files", .array(m.files.map { f in
            .object([
                JSONMember("name", .string(f.name)),
                JSONMember("bytes", .int(f.bytes)),
                JSONMember("sha256", .string(f.sha256)),
                JSONMember("source", f.source.map { .string($0) } ?? .null),
            ])
        })))
        members.append(JSONMember("registered_at", .string(Timestamp.iso8601(r.registeredAt))))
        members.append(JSONMember("finished_at", .string(Timestamp.iso8601(m.finishedAt))))
        members.append(JSONMember("api_status", r.apiStatus.map { .string($0) } ?? .null))
        members.append(JSONMember("polls", .int(r.polls)))
        members.append(JSONMember("retries", .int(r.retries)))
        var status: JSONValue = .null
        // As the API sent it, but with presigned URLs' signatures taken out.
        if let text = r.lastStatus { status = SignatureRedactor.redact((try? JSONParser.parse(text)) ?? .string(text)) }
        members.append(JSONMember("status", status))
        return .object(members)
    }
}
