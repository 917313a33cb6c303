@testable import JobFetchArtifacts
@testable import JobFetchCore
@testable import JobFetchEngine

/// One seed, one run.
struct SimRandom {
    var g: SplitMix64
    init(seed: UInt64) { g = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ 0xD1B5_4A32_D192_ED03) }
    mutating func next() -> UInt64 { g.next() }
    mutating func unit() -> Double { g.unit() }
    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    mutating func chance(_ p: Double) -> Bool { unit() < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

/// Virtual time, moved by the simulation alone.
final class SimClock: JobClock, @unchecked Sendable {
    var t: Double
    init(_ t: Double) { self.t = t }
    func now() -> Double { t }
    func monotonic() -> Double { t }
}

/// A broken invariant: what, when, and the seed that replays it.
struct Violation: Error, CustomStringConvertible {
    let seed: UInt64
    let at: Double
    let what: String
    var description: String { "seed \(seed) at t=\(String(format: "%.3f", at)): \(what)\n  replay: make simulate SEED=\(seed)" }
}

/// The files of one job as a disk would keep them across a crash.
struct SimDisk {
    /// The `.part`: bytes, and the sidecar's validator and flushed length.
    var part: [UInt8] = []
    var partVersion: Int?
    var partSynced: Int64 = 0
    /// Which server version each byte of the part came from (a splice shows here).
    var partVersions: Set<Int> = []
    var staged: Set<String> = []
    var pagesFile: [UInt8] = []
    /// The artifact named in staging, with the versions its bytes came from.
    var artifact: (bytes: [UInt8], versions: Set<Int>)?
}

/// The simulator's world: requests are queued for the simulation to answer;
/// files live in `SimDisk`s that survive a simulated crash.
final class SimWorld: JobWorld {
    let sim: Simulation
    /// Set once the process has "died": nothing more reaches the disk or the network.
    var dead = false
    var nextTag = 1
    var decoding: [JobKey: DecodeOutcome] = [:]

    init(sim: Simulation) { self.sim = sim }

    func start(_ request: JobRequest, record: JobRecord, kind: KindConfig) throws(JobFetchError) -> Int {
        guard !dead else { throw JobFetchError("the process is gone") }
        if sim.faults.chance(0.01) { throw JobFetchError("cannot start a request: simulated setopt failure") }
        let tag = nextTag
        nextTag += 1
        sim.requestStarted(tag: tag, request, record: record, kind: kind)
        if request.purpose == .transfer, var d = sim.disk[request.key] {
            // As `SystemWorld.transferRequest`: what an earlier attempt named goes; the documents stay.
            d.artifact = nil
            d.staged.formIntersection(kind.mapping.documentNames)
            sim.disk[request.key] = d
        }
        return tag
    }

    func cancel(_ tag: Int, checkpoint: Bool) -> Int64? {
        sim.requestCancelled(tag: tag, checkpoint: checkpoint)
    }

    func progress(_ tag: Int) -> (bytes: Int64, total: Int64?)? { sim.transferProgress(tag: tag) }

    func facts(for record: JobRecord, kind: KindConfig?) -> DueFacts {
        var f = DueFacts()
        switch record.state {
        case .publishing:
            if let p = sim.published[record.key]?.last, p.finishedAt == record.finishedAt { f.alreadyPublished = "/sim/out/\(record.key)" }
        case .fetching:
            if record.pageNext != nil { f.pagesFileSize = Int64(sim.disk[record.key]?.pagesFile.count ?? 0) } else { f.freeSpace = sim.freeSpace }
        default: break
        }
        return f
    }

    private func diskFull(_ what: String) throws(JobFetchError) {
        if sim.faults.chance(sim.diskFaultRate) { throw JobFetchError("\(what): No space left on device (simulated)") }
    }

    func stage(_ key: JobKey, documents: [PublishedDocument], inline: String?) throws(JobFetchError) {
        guard !dead else { return }
        try diskFull("write staging")
        var d = sim.disk[key] ?? SimDisk()
        d.staged = Set(documents.map(\.name))
        if inline != nil { d.staged.insert("result") }
        d.artifact = nil
        d.pagesFile = []
        sim.disk[key] = d
    }

    func clearStaging(_ key: JobKey) {
        guard !dead else { return }
        sim.disk[key] = SimDisk()
    }

    func removeStaging(_ key: JobKey) {
        guard !dead else { return }
        sim.disk[key] = SimDisk()
    }

    func truncatePages(_ key: JobKey, file: String, bytes: Int64) throws(JobFetchError) {
        guard !dead else { return }
        try diskFull("truncate \(file)")
        var d = sim.disk[key] ?? SimDisk()
        if d.pagesFile.count > Int(bytes) { d.pagesFile.removeLast(d.pagesFile.count - Int(bytes)) }
        sim.disk[key] = d
    }

    func appendPage(_ key: JobKey, file: String, bytes: [UInt8]) throws(JobFetchError) {
        guard !dead else { return }
        try diskFull("append \(file)")
        sim.disk[key, default: SimDisk()].pagesFile += bytes
    }

    func discardPart(_ key: JobKey) {
        guard !dead else { return }
        sim.disk[key, default: SimDisk()].part = []
        sim.disk[key, default: SimDisk()].partSynced = 0
        sim.disk[key, default: SimDisk()].partVersion = nil
        sim.disk[key, default: SimDisk()].partVersions = []
    }

    func awaitDecode(_ key: JobKey, bytes: Int64) -> Bool {
        guard !dead, let d = sim.disk[key] else { return false }
        if sim.faults.chance(sim.diskFaultRate) {
            decoding[key] = .writeFailed("No space left on device (simulated)")
        } else {
            decoding[key] = .notCompressed(bytes: Int64(d.part.count), sha256: Simulation.digest(d.part))
        }
        return true
    }

    func finishedDecodes(among keys: Set<JobKey>) -> [(JobKey, DecodeOutcome)] {
        var out: [(JobKey, DecodeOutcome)] = []
        for key in keys.sorted(by: { $0.description < $1.description }) {
            if let o = decoding.removeValue(forKey: key) { out.append((key, o)) }
        }
        return out
    }

    func dropDecoder(_ key: JobKey) { decoding[key] = nil }

    func nameArtifact(_ key: JobKey, _ artifact: NamedArtifact) throws(JobFetchError) {
        guard !dead else { return }
        guard var d = sim.disk[key], !d.part.isEmpty || artifact.files.first?.bytes == 0 else { throw JobFetchError("rename .artifact.part: No such file") }
        // As `SystemWorld`: the part stays until the job publishes.
        d.artifact = (d.part, d.partVersions)
        d.staged.insert(artifact.name)
        sim.disk[key] = d
    }

    func publish(_ record: JobRecord, kind: KindConfig?) -> PublishAnswer {
        guard !dead else { return .failed("the process is gone") }
        if sim.faults.chance(sim.diskFaultRate) { return .failed("rename staging: No space left on device (simulated)") }
        let d = sim.disk[record.key] ?? SimDisk()
        if record.outcome == .succeeded && record.resultURL != nil && d.artifact == nil { return .resultMissing }
        sim.didPublish(record, disk: d)
        sim.disk[record.key] = SimDisk()
        return .published(path: "/sim/out/\(record.key)")
    }

    func handling(_ key: JobKey, _ body: () -> Void) { body() }
}
