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

    init(_ d: DaemonSettings) {
        keepResults = d.keepResults
        forgetAfter = d.forgetAfter
    }

    var isOn: Bool { keepResults != nil || forgetAfter != nil }

    /// A tenth of the shortest period, between a second and an hour: a result is removed at most that late.
    var interval: Double { min(3600, max(1, min(keepResults ?? .infinity, forgetAfter ?? .infinity) / 10)) }

    /// Removed per sweep at most (the next sweep goes on), so the loop is never held for long.
    static let batch = 500

    static let removedCounter = "jobfetchd_results_removed_total"
}

extension Engine {
    func sweepRetention(now: Double) {
        guard retention.isOn, now >= retention.nextAt else { return }
        retention.nextAt = now + retention.interval
        if let keep = retention.keepResults { removeResults(olderThan: keep, now: now) }
        if let forget = retention.forgetAfter {
            do {
                let n = try store.forget(finishedBefore: now - forget)
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
    /// `.incoming/`, so a reader sees it whole or not at all, then removed;
    /// the store records when (a history line), so it is not tried again.
    private func removeResults(olderThan keep: Double, now: Double) {
        let old: [JobRecord]
        do { old = try store.finishedWithResults(before: now - keep, limit: Retention.batch) } catch {
            logger.error("keep_results: cannot read finished jobs: \(error)")
            return
        }
        var removed = 0
        for var r in old {
            let dir = "\(config.daemon.outputDir)/\(r.key.kind)/\(r.key.id)"
            let trash = "\(config.daemon.outputDir)/.incoming/.expired-\(r.key.kind)-\(r.key.id)"
            do {
                try FileIO.removeTree(trash)
                if FileIO.exists(dir) {
                    guard rename(dir, trash) == 0 else { throw SystemError("rename", dir) }
                    try FileIO.removeTree(trash)
                }
                r.resultsRemovedAt = now
                r.updatedAt = now
                try store.save(r, event: "results removed: finished more than \(Units.formatDuration(keep)) ago (keep_results)")
                removed += 1
                logger.debug("removed \(dir) (keep_results)", metadata: Logger.job(r.key))
            } catch {
                logger.error("keep_results: cannot remove \(dir): \(error)", metadata: Logger.job(r.key))
            }
        }
        if removed > 0 {
            driver.metrics.resultsRemoved(removed)
            logger.info("removed the results of \(removed) job(s) that finished more than \(Units.formatDuration(keep)) ago (keep_results)")
        }
    }
}
