import Glibc
import Logging
import JobFetchCore
import JobFetchStore

/// `keep_results` and `forget_after`: a sweep at start and then every
/// `interval` removes the published directories of jobs that finished
/// longer ago than `keep_results`, then forgets (from the store, with their
/// history) jobs that finished longer ago than `forget_after`. Only
/// finished jobs: the store's queries ask for terminal states, and a job an
/// operator retried is active again until it finishes anew.
struct Retention {
    var keepResults: Double?
    var forgetAfter: Double?
    var nextAt: Double = 0
    /// Jobs whose directory could not be removed in this run of the daemon
    /// (logged each time): skipped, so they do not hold up the others.
    var failed: Set<JobKey> = []

    init(_ d: DaemonSettings) {
        keepResults = d.keepResults
        forgetAfter = d.forgetAfter
    }

    var isOn: Bool { keepResults != nil || forgetAfter != nil }

    /// A tenth of the shortest period, between a second and an hour: a result is removed at most that late.
    var interval: Double { min(3600, max(1, min(keepResults ?? .infinity, forgetAfter ?? .infinity) / 10)) }

    /// Removed (and forgotten) per sweep at most; the next sweep goes on, so the loop is never held for long.
    static let batch = 500
}

extension Engine {
    func sweepRetention(now: Double) {
        guard retention.isOn, now >= retention.nextAt else { return }
        retention.nextAt = now + retention.interval
        if let keep = retention.keepResults { removeResults(olderThan: keep, now: now) }
        if let forget = retention.forgetAfter {
            do {
                // With keep_results, a job is forgotten only once its directory is gone: none is left unknown on disk.
                let n = try store.forget(finishedBefore: now - forget, resultsRemoved: retention.keepResults != nil, limit: Retention.batch * 4)
                if n > 0 {
                    driver.metrics.forgotten(n)
                    logger.info("forgot \(n) job(s) that finished more than \(Units.formatDuration(forget)) ago (forget_after)")
                }
            } catch {
                logger.error("forget_after: cannot forget old jobs: \(error)")
            }
        }
    }

    /// Each directory is first renamed out of `<output>/<kind>/` into
    /// `.incoming/<kind>/.expired-<id>` (an ID never starts with a dot), so
    /// a reader sees it whole or not at all, then removed; the store records
    /// when (a history line), all of a sweep in one transaction, so it is not
    /// tried again.
    private func removeResults(olderThan keep: Double, now: Double) {
        let old: [JobRecord]
        do { old = try store.finishedWithResults(before: now - keep, limit: Retention.batch + retention.failed.count) } catch {
            logger.error("keep_results: cannot read finished jobs: \(error)")
            return
        }
        var gone: [JobRecord] = []
        for var r in old.filter({ !retention.failed.contains($0.key) }).prefix(Retention.batch) {
            let dir = publisher.finalDirectory(r.key)
            let trash = "\(config.daemon.outputDir)/.incoming/\(r.key.kind)/.expired-\(r.key.id)"
            do {
                try FileIO.removeTree(trash)
                if FileIO.exists(dir) {
                    try FileIO.makeDirectories(FileIO.parent(trash))
                    guard rename(dir, trash) == 0 else { throw SystemError("rename", dir) }
                    try FileIO.removeTree(trash)
                }
                r.resultsRemovedAt = now
                r.updatedAt = now
                gone.append(r)
                logger.debug("removed \(dir) (keep_results)", metadata: Logger.job(r.key))
            } catch {
                retention.failed.insert(r.key)
                logger.error("keep_results: cannot remove \(dir): \(error); left until the daemon restarts", metadata: Logger.job(r.key))
            }
        }
        let removed = gone.count
        do {
            try store.batch { () throws(StoreError) in
                for r in gone { try store.save(r, event: "results removed: finished more than \(Units.formatDuration(keep)) ago (keep_results)") }
            }
        } catch {
            // The directories are gone; the next sweep finds nothing to remove and records it then.
            logger.error("keep_results: cannot record the removals: \(error)")
            return
        }
        if removed > 0 {
            driver.metrics.resultsRemoved(removed)
            logger.info("removed the results of \(removed) job(s) that finished more than \(Units.formatDuration(keep)) ago (keep_results)")
        }
    }
}
