// ConfigParser.parse over arbitrary text: daemon.conf is written by people
// (and by config management), and `jobfetchctl check` runs it first. Problems
// are reported, never a crash. An empty environment and `.syntaxOnly`, the
// mode that checks `${file:}`/`${credential:}` references without reading
// the secret files (as jobfetchctl does).
import JobFetchCore
import CLibFuzzer

/// The program's entry point (SwiftPM links `main` to `FuzzConfig_main`; see
/// Fuzz/Package.swift): libFuzzer's driver, exactly as its own main() runs it.
@_cdecl("FuzzConfig_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    jobfetch_fuzzer_main(argc, argv)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // As ConfigParser.load reads the file: bytes as UTF-8, invalid sequences repaired.
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let config = try ConfigParser.parse(text, file: "fuzz.conf", environment: .init([:]), secrets: .syntaxOnly)
        precondition(!config.kinds.isEmpty, "a config without a kind was accepted")
        // What Transfer does with the daemon's durations on every request:
        // Int(connectTimeout * 1000) for CURLOPT_CONNECTTIMEOUT_MS, Int(lowSpeedTime).
        let d = config.daemon
        precondition(fitsInt(d.connectTimeout * 1000), "connect_timeout \(d.connectTimeout)s accepted; Transfer's Int(ms) traps on it")
        precondition(fitsInt(d.lowSpeedTime), "low_speed_time \(d.lowSpeedTime)s accepted; Transfer's Int() traps on it")
        for kind in config.kinds {
            // Durations the engine adds to the clock: a number, never infinity.
            for (key, value) in [("poll_interval", kind.pollInterval), ("max_poll_interval", kind.maxPollInterval),
                                 ("timeout", kind.timeout), ("not_found_grace", kind.notFoundGrace),
                                 ("rate_limit", kind.rateLimit?.per ?? 1)] {
                precondition(value.isFinite, "\(key) = \(value) accepted for [kind \(kind.name)]")
            }
            precondition(KindName.problem(with: kind.name) == nil, "kind name \(kind.name) was accepted")
            precondition(kind.pollInterval > 0 && kind.pollInterval <= kind.maxPollInterval, "poll intervals accepted out of order")
            // What the engine does with an accepted kind at start.
            _ = try? ParsedURL(kind.statusURL.replacingOccurrences(of: "{id}", with: "ID"))
        }
    } catch {
        precondition(!error.problems.isEmpty, "ConfigErrors without a problem")
        _ = error.description
    }
    return 0
}

/// Whether `Int(v)` would not trap.
func fitsInt(_ v: Double) -> Bool { v.isFinite && v > -9.2e18 && v < 9.2e18 }
