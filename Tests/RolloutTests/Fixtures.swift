import BulkheadCore
import Rollout

/// Builders shared by the tests: cohorts parsed from real TOML, gates, samples.
enum Fixtures {
    /// The Lua 5.4 form of the outage's error, as `ErrorSignature.normalize` leaves it.
    static let executeSignature = "runtime.lua: attempt to index a nil value (field 'execute')"

    /// A cohort parsed from a cohort file's text, as the supervisor reads it.
    static func cohort(
        _ name: String, order: Int, workers: Int, canary: Int = 0, gate: String = ""
    ) throws -> CohortConfiguration {
        let text = """
            name = "\(name)"
            order = \(order)
            port = 0
            workers = \(workers)
            canary_workers = \(canary)
            \(gate.isEmpty ? "" : "[gate]\n" + gate)
            """
        return try CohortConfiguration.parse(text, file: "cohorts/\(name).toml")
    }

    /// A gate with short, round numbers.
    static func gate(
        bake: Double = 10, maxBake: Double = 60, minRequests: Int = 50, maxErrorRate: Double = 0.01,
        maxIncrease: Double = 0.005, maxP99: Double = 250, maxNewSignatures: Int = 0, maxCrashes: Int = 0
    ) -> CohortConfiguration.Gate {
        var gate = CohortConfiguration.Gate.defaults
        gate.bakeSeconds = bake
        gate.maxBakeSeconds = maxBake
        gate.minRequests = minRequests
        gate.maxErrorRate = maxErrorRate
        gate.maxErrorRateIncrease = maxIncrease
        gate.maxP99Milliseconds = maxP99
        gate.maxNewSignatures = maxNewSignatures
        gate.maxCrashes = maxCrashes
        return gate
    }

    /// A window's sample; healthy unless told otherwise (p99 20 ms).
    static func sample(
        requests: Int, platformErrors: Int = 0, scriptErrors: Int = 0, signatures: [String: Int] = [:],
        p99: Double? = 20, crashes: Int = 0
    ) -> StageSample {
        StageSample(
            requests: requests, platformErrors: platformErrors, scriptErrors: scriptErrors, signatures: signatures,
            p99Milliseconds: p99, crashes: crashes)
    }

    /// free (2 workers, canary 1), pro (2), enterprise (1): four stages, all with `gate`.
    static func stages(gate: CohortConfiguration.Gate = Fixtures.gate()) -> [Stage] {
        [
            Stage(pool: "free", slots: [0], name: "free canary", isCanary: true, gate: gate),
            Stage(pool: "free", slots: [1], name: "free", gate: gate),
            Stage(pool: "pro", slots: [0, 1], name: "pro", gate: gate),
            Stage(pool: "enterprise", slots: [0], name: "enterprise", gate: gate),
        ]
    }

    /// A rules rollout 3 → 4 over `stages()`, created at t = 1000.
    static func machine(gate: CohortConfiguration.Gate = Fixtures.gate(), frozen: Bool = false) throws -> RolloutMachine {
        try RolloutMachine(
            kind: .rules, targetVersion: 4, previousVersion: 3, stages: stages(gate: gate), now: 1000, frozen: frozen)
    }

    /// A healthy window of 100 requests with a matching baseline.
    static let healthy = sample(requests: 100)
}

extension RolloutAction {
    /// The decision this action records, if it is a record.
    var decision: RolloutDecision? {
        if case .record(let decision) = self { return decision }
        return nil
    }
}

extension Array where Element == RolloutAction {
    /// The actions other than records: what the I/O layer must actually do.
    var effects: [RolloutAction] {
        filter { $0.decision == nil }
    }

    /// The events of the recorded decisions, in order.
    var events: [RolloutDecision.Event] {
        compactMap { $0.decision?.event }
    }
}
