import HeapModule
import JobFetchCore

/// The store's due-time index, in memory: for every job in an active state,
/// the state and `next_at` its committed row holds, in one min-heap per
/// state. The engine asks it each turn of its loop what is due and when it
/// must next wake, which costs no SQL, no lock and no system call; with
/// 10,000 jobs polled every 10 s that is most of what an idle turn did.
///
/// The heaps hold stale entries (a job's older times) until they reach the
/// top, where a look at `current` drops them. A claimed job (one the engine
/// has a request in flight for) is not due: its entry is set aside when it
/// surfaces, and goes back when the claim ends.
struct Schedule {
    struct Entry: Comparable {
        let at: Double
        let key: JobKey
        /// Soonest first; jobs due at the same time by key, so the order never
        /// depends on how the heap was filled (a replayed run starts them alike).
        static func < (a: Entry, b: Entry) -> Bool {
            a.at != b.at ? a.at < b.at : (a.key.kind, a.key.id.rawValue) < (b.key.kind, b.key.id.rawValue)
        }
        static func == (a: Entry, b: Entry) -> Bool { a.at == b.at && a.key == b.key }
    }

    private static let tracked = JobState.active
    private var current: [JobKey: (state: JobState, at: Double)] = [:]
    /// One heap per tracked state, in the order of `tracked`.
    private var heaps = [Heap<Entry>](repeating: Heap(), count: Schedule.tracked.count)
    private var claimed: Set<JobKey> = []
    /// Entries of claimed jobs taken off their heap, with the heap they came from.
    private var parked: [JobKey: (Entry, Int)] = [:]

    /// Stale entries tolerated beyond twice the live ones before a rebuild.
    private let slack: Int
    private(set) var compactions = 0

    init(slack: Int = 1024) { self.slack = slack }

    var count: Int { current.count }
    /// The jobs with a request in flight.
    var claimedKeys: Set<JobKey> { claimed }
    /// Every tracked job's state and due time.
    var entries: [JobKey: (state: JobState, at: Double)] { current }

    /// Records a job's committed state and due time (a job that is no longer
    /// active leaves the schedule).
    mutating func set(_ key: JobKey, state: JobState, at: Double) {
        guard let h = Self.tracked.firstIndex(of: state) else {
            current[key] = nil
            return
        }
        if let c = current[key], c.state == state, c.at == at { return }
        current[key] = (state, at)
        heaps[h].insert(Entry(at: at, key: key))
        if heaps[h].count > 2 * current.count + slack { compact() }
    }

    /// Forgets everything but the claims; the caller then `set`s every active job.
    mutating func clear() {
        current = [:]
        heaps = [Heap<Entry>](repeating: Heap(), count: Self.tracked.count)
        parked = [:]
    }

    mutating func claim(_ key: JobKey) { claimed.insert(key) }

    mutating func unclaim(_ key: JobKey) {
        guard claimed.remove(key) != nil, let (entry, h) = parked.removeValue(forKey: key), isLive(entry, heap: h) else { return }
        heaps[h].insert(entry)
    }

    /// The jobs in `states` due at `now`, soonest first, at most `limit`, claimed ones left out.
    mutating func due(in states: [JobState], now: Double, limit: Int) -> [JobKey] {
        guard limit > 0 else { return [] }
        var found: [Entry] = []
        for state in states {
            guard let h = Self.tracked.firstIndex(of: state) else { continue }
            var taken: [Entry] = []
            while taken.count < limit, let top = surface(h), top.at <= now {
                taken.append(heaps[h].removeMin())
            }
            // What is due stays in the heap until the job is claimed or rescheduled.
            for e in taken { heaps[h].insert(e) }
            found += taken
        }
        found.sort()
        return found.prefix(limit).map(\.key)
    }

    /// The soonest due time among unclaimed jobs in `states`.
    mutating func nextDue(in states: [JobState]) -> Double? {
        var soonest: Double?
        for state in states {
            guard let h = Self.tracked.firstIndex(of: state), let top = surface(h) else { continue }
            soonest = min(soonest ?? .infinity, top.at)
        }
        return soonest
    }

    /// Drops stale entries from the top of heap `h` and parks claimed ones;
    /// returns the live, unclaimed top.
    private mutating func surface(_ h: Int) -> Entry? {
        while let top = heaps[h].min {
            if !isLive(top, heap: h) {
                heaps[h].removeMin()
            } else if claimed.contains(top.key) {
                parked[top.key] = (heaps[h].removeMin(), h)
            } else {
                return top
            }
        }
        return nil
    }

    private func isLive(_ e: Entry, heap h: Int) -> Bool {
        guard let c = current[e.key] else { return false }
        return c.at == e.at && c.state == Self.tracked[h]
    }

    /// Rebuilds the heaps from `current` when stale entries pile up.
    private mutating func compact() {
        var fresh = [[Entry]](repeating: [], count: Self.tracked.count)
        for (key, c) in current where !(parked[key].map { isLive($0.0, heap: $0.1) } ?? false) {
            if let h = Self.tracked.firstIndex(of: c.state) { fresh[h].append(Entry(at: c.at, key: key)) }
        }
        heaps = fresh.map { Heap($0) }
        compactions += 1
    }
}
