import Glibc
import Testing
@testable import JobFetchCore

/// The deterministic simulator (README "Architecture"): every seed is one
/// reproducible run of the daemon's machine and driver against simulated
/// APIs, faults and unclean stops. `SIM_SEEDS` (default 2,000) seeds from
/// `SIM_FIRST` (default 1), or the one seed `SIM_SEED`; `make simulate`
/// sets them.
@Suite struct SimulatorTests {
    static func env(_ name: String) -> UInt64? { getenv(name).flatMap { UInt64(String(cString: $0)) } }

    @Test func seededRunsKeepEveryInvariant() throws {
        let seeds: ClosedRange<UInt64>
        if let one = Self.env("SIM_SEED") {
            seeds = one...one
        } else {
            let first = Self.env("SIM_FIRST") ?? 1
            seeds = first...(first + max(1, Self.env("SIM_SEEDS") ?? 2000) - 1)
        }
        let started = SystemClock.monotonic()
        var steps = 0, ran = 0
        var found: [Violation] = []
        for seed in seeds {
            ran += 1
            let sim = try Simulation(seed: seed)
            if let v = sim.run() {
                found.append(v)
                if found.count >= 5 { break }
            }
            steps += sim.steps
        }
        let seconds = SystemClock.monotonic() - started
        print("simulated \(ran) seed(s) \(seeds.lowerBound)...\(seeds.lowerBound + UInt64(ran) - 1) in \(String(format: "%.1f", seconds)) s (\(Int(Double(ran) / max(seconds, 0.001))) seeds/s, \(steps) steps); \(found.count) violation(s)\(found.count >= 5 ? ", stopped at the fifth" : "")")
        for v in found { Issue.record("\(v)") }
    }

    /// The simulator is deterministic: a seed run twice takes the same steps and ends the same way.
    @Test func aSeedReplaysExactly() throws {
        for seed: UInt64 in [7, 42, 1234] {
            let a = try Simulation(seed: seed), b = try Simulation(seed: seed)
            let va = a.run(), vb = b.run()
            #expect(a.steps == b.steps)
            #expect(a.clock.t == b.clock.t)
            #expect(va?.description == vb?.description)
            #expect(a.published.mapValues { $0.map(\.outcome) } == b.published.mapValues { $0.map(\.outcome) })
        }
    }
}
