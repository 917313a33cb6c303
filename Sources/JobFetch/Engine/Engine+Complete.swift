import Glibc
import Logging

/// The end of a job: record the outcome, publish its directory, then mark it done.
extension Engine {
    /// Enters `publishing` (durably, with the outcome), then publishes.
    func complete(_ r: inout JobRecord, _ outcome: Outcome, now: Double) {
        r.outcome = outcome
        r.rate = nil
        r.state = .publishing
        r.finishedAt = now
        r.updatedAt = now
        r.nextAt = now
        if outcome == .succeeded { r.reason = nil }
        // job.json says what the store keeps: server text in a reason is bounded.
        r.reason = r.reason.map { ServerText.capped($0) }
        let event = outcome == .succeeded ? "succeeded" : "\(outcome.rawValue): \(r.reason ?? "")"
        if outcome == .succeeded {
            logger.info("succeeded; publishing", metadata: Logger.job(r.key))
        } else {
            logger.warning("\(outcome.rawValue): \(r.reason ?? "")", metadata: Logger.job(r.key))
        }
        if outcome != .succeeded {
            knownDigests[r.key] = nil
            // A failed job's directory holds job.json only.
            do { _ = try publisher.freshStaging(r.key) } catch {
                logger.error("cannot clear the staging directory: \(error)", metadata: Logger.job(r.key))
            }
        }
        save(r, event: event)
        publishNow(&r)
    }

    /// For a job found in `publishing` (after a crash or a failed publish).
    func publishRecovered(_ record: JobRecord) {
        var r = record
        if publisher.isPublished(r.key, finishedAt: r.finishedAt) {
            // What is left in staging is an older result swapped out, or nothing.
            do { try FileIO.removeTree(publisher.stagingDirectory(r.key)) } catch {
                logger.error("cannot clear the staging directory: \(error)", metadata: Logger.job(r.key))
            }
            finishPublished(&r, path: publisher.finalDirectory(r.key), recovered: true)
            return
        }
        publishNow(&r)
    }

    func publishNow(_ r: inout JobRecord) {
        let outcome = r.outcome ?? .failed
        let staging = publisher.stagingDirectory(r.key)
        do {
            var files: [PublishedFile] = []
            let documents = config.kind(r.key.kind)?.mapping.documentNames ?? ["result"]
            if outcome == .succeeded, FileIO.exists(staging) {
                let known = Dictionary((knownDigests.removeValue(forKey: r.key) ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
                for name in try FileIO.regularFiles(under: staging) where name != "job.json" {
                    let source = documents.contains(name) ? nil : r.resultURL.map(ParsedURL.redact)
                    if let known = known[name], FileIO.size(staging + "/" + name) == known.bytes {
                        // Hashed while it downloaded.
                        files.append(PublishedFile(name: name, bytes: known.bytes, sha256: known.sha256, source: source))
                        continue
                    }
                    let digest = try FileDigest.sha256(staging + "/" + name)
                    files.append(PublishedFile(name: name, bytes: digest.bytes, sha256: digest.hex, source: source))
                }
            }
            if outcome == .succeeded && r.resultURL != nil && !files.contains(where: { !documents.contains($0.name) }) {
                // The download is gone (staging lost): fetch it again rather than publish without it.
                r.state = .fetching
                r.outcome = nil
                r.nextAt = Clock.now()
                save(r, event: "result files missing before publishing; downloading again")
                return
            }
            let path = try publisher.publish(Publisher.Manifest(record: r, outcome: outcome, files: files, finishedAt: r.finishedAt ?? Clock.now()))
            finishPublished(&r, path: path, recovered: false)
        } catch {
            metrics.publishFailed(r.key.kind)
            r.lastError = "publishing failed: \(error)"
            r.nextAt = Clock.now() + 30
            logger.error("publishing failed, retrying in 30s: \(error)", metadata: Logger.job(r.key))
            save(r)
        }
    }

    func finishPublished(_ r: inout JobRecord, path: String, recovered: Bool) {
        let outcome = r.outcome ?? .failed
        r.state = switch outcome {
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
        r.updatedAt = Clock.now()
        metrics.finished(r.key.kind, outcome: outcome)
        save(r, event: "published to \(path)")
        logger.info("published \(outcome.rawValue) to \(path)\(recovered ? " (recovered)" : "")", metadata: Logger.job(r.key))
    }
}
