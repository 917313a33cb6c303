import Glibc

#if DEBUG
/// Debug builds only: `JOBFETCH_FAULT_STOP="<point> <kind/id>"` stops the
/// whole daemon (SIGSTOP) when that job reaches that point, so a test can
/// kill it exactly there. The points: `decoding` (the body is all in, the
/// decompressor drains), `named` (the artifact has its name in the staging
/// directory, the job's new state not yet committed), `publishing` (that
/// state committed, nothing published), `published` (the directory renamed
/// into place, the store not yet told).
package enum FaultStop {
    private static let target: (point: Substring, job: Substring)? = {
        guard let raw = getenv("JOBFETCH_FAULT_STOP") else { return nil }
        let words = String(cString: raw).split(separator: " ")
        return words.count == 2 ? (words[0], words[1]) : nil
    }()

    package static func at(_ point: String, _ key: JobKey) {
        guard let target, target.point == point, target.job == key.description else { return }
        raise(SIGSTOP)
    }
}
#endif
