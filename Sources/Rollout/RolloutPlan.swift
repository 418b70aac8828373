import BulkheadCore

/// Builds the stages of a rollout from the cohorts, and tells the supervisor what to
/// measure as each stage's baseline.
public enum RolloutPlan {
    /// The stages a platform change walks through, in order.
    ///
    /// Cohorts are taken in `order` (ties broken by name, so the plan never depends
    /// on the order files were read). The first pool is split in two when it has a
    /// proper canary — slots `0..<canaryWorkers`, then the rest of the pool — and is
    /// one stage when `canaryWorkers` is 0 or covers every worker (a "canary" of the
    /// whole pool would have no old workers left to compare it with). Every later pool
    /// is one stage. A pool with no workers gets no stage: there is nothing to ship
    /// to, and a stage without workers could only ever be inconclusive.
    ///
    /// - Parameter cohorts: the pools, in any order.
    /// - Returns: the stages; empty when no pool has a worker.
    public static func stages(cohorts: [CohortConfiguration]) -> [Stage] {
        let ordered = cohorts
            .filter { $0.workers > 0 }
            .sorted { ($0.order, $0.name) < ($1.order, $1.name) }
        var stages: [Stage] = []
        for (position, cohort) in ordered.enumerated() {
            let all = Array(0..<cohort.workers)
            if position == 0, cohort.canaryWorkers > 0, cohort.canaryWorkers < cohort.workers {
                stages.append(Stage(
                    pool: cohort.name, slots: Array(0..<cohort.canaryWorkers),
                    name: "\(cohort.name) canary", isCanary: true, gate: cohort.gate))
                stages.append(Stage(
                    pool: cohort.name, slots: Array(cohort.canaryWorkers..<cohort.workers),
                    name: cohort.name, gate: cohort.gate))
            } else {
                stages.append(Stage(pool: cohort.name, slots: all, name: cohort.name, gate: cohort.gate))
            }
        }
        return stages
    }

    /// What the supervisor should measure as the baseline of stage `index`, or nil
    /// when `index` is out of range.
    ///
    /// The baseline is the old version under the same traffic: the slots of the
    /// stage's own pool that later stages will get, measured in the same window, when
    /// there are any (the canary stage); otherwise the stage's own slots over a window
    /// just before the stage began, when they still ran the old version.
    ///
    /// Old workers of *other* pools are deliberately not used: each pool serves other
    /// customers with other scripts, so their script error rates and error signatures
    /// differ for reasons that have nothing to do with the change, and a signature
    /// only one cohort's scripts produce would look "new" and fail the stage at once.
    public static func baseline(forStage index: Int, in stages: [Stage]) -> BaselineSource? {
        guard stages.indices.contains(index) else { return nil }
        let stage = stages[index]
        let laterSlots = stages[(index + 1)...]
            .filter { $0.pool == stage.pool }
            .flatMap(\.slots)
            .sorted()
        if laterSlots.isEmpty {
            return .beforeStage(pool: stage.pool, slots: stage.slots)
        }
        return .concurrent(pool: stage.pool, slots: laterSlots)
    }
}

/// Where a stage's baseline comes from.
public enum BaselineSource: Codable, Sendable, Equatable {
    /// These slots of the pool still run the old version: measure them over the same
    /// window as the stage.
    case concurrent(pool: String, slots: [Int])
    /// No slot of the pool is left on the old version: measure the stage's own slots
    /// over a window (of about `bakeSeconds`) that ended when the stage began.
    case beforeStage(pool: String, slots: [Int])
}
