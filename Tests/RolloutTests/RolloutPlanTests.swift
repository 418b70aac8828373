import BulkheadCore
import Rollout
import Testing

@Suite("Rollout plan")
struct RolloutPlanTests {
    @Test("canary 1 of 2: the canary slot, then the rest of the pool, then each next pool")
    func canaryOneOfTwo() throws {
        let stages = RolloutPlan.stages(cohorts: [
            try Fixtures.cohort("free", order: 1, workers: 2, canary: 1),
            try Fixtures.cohort("pro", order: 2, workers: 3, canary: 1),
        ])
        #expect(stages.map(\.name) == ["free canary", "free", "pro"])
        #expect(stages.map(\.pool) == ["free", "free", "pro"])
        #expect(stages.map(\.slots) == [[0], [1], [0, 1, 2]])
        #expect(stages.map(\.isCanary) == [true, false, false])
    }

    @Test("canary 0: the first pool is one stage")
    func canaryZero() throws {
        let stages = RolloutPlan.stages(cohorts: [
            try Fixtures.cohort("free", order: 1, workers: 3, canary: 0),
            try Fixtures.cohort("pro", order: 2, workers: 2),
        ])
        #expect(stages.map(\.name) == ["free", "pro"])
        #expect(stages.map(\.slots) == [[0, 1, 2], [0, 1]])
        #expect(stages.allSatisfy { !$0.isCanary })
    }

    @Test("canary as large as the pool: one stage, nothing would be left to compare with")
    func canaryWholePool() throws {
        let stages = RolloutPlan.stages(cohorts: [try Fixtures.cohort("free", order: 1, workers: 2, canary: 2)])
        #expect(stages.map(\.name) == ["free"])
        #expect(stages.map(\.slots) == [[0, 1]])
    }

    @Test("a single-worker pool with canary 1 is one stage")
    func singleWorkerPool() throws {
        let stages = RolloutPlan.stages(cohorts: [
            try Fixtures.cohort("free", order: 1, workers: 1, canary: 1),
            try Fixtures.cohort("pro", order: 2, workers: 1, canary: 1),
        ])
        #expect(stages.map(\.name) == ["free", "pro"])
        #expect(stages.map(\.slots) == [[0], [0]])
    }

    @Test("three cohorts out of order are sorted by order; only the first gets a canary")
    func threeCohortsOutOfOrder() throws {
        let stages = RolloutPlan.stages(cohorts: [
            try Fixtures.cohort("enterprise", order: 30, workers: 2, canary: 1),
            try Fixtures.cohort("free", order: 10, workers: 4, canary: 2, gate: "bake_seconds = 5"),
            try Fixtures.cohort("pro", order: 20, workers: 3, canary: 1, gate: "max_p99_ms = 100"),
        ])
        #expect(stages.map(\.name) == ["free canary", "free", "pro", "enterprise"])
        #expect(stages.map(\.slots) == [[0, 1], [2, 3], [0, 1, 2], [0, 1]])
        // Each stage carries its own pool's gate.
        #expect(stages.map(\.gate.bakeSeconds) == [5, 5, 10, 10])
        #expect(stages.map(\.gate.maxP99Milliseconds) == [250, 250, 100, 250])
    }

    @Test("no cohort, no stage")
    func noCohorts() {
        #expect(RolloutPlan.stages(cohorts: []).isEmpty)
    }

    @Test("baseline: the canary is compared with the rest of its pool, a whole pool with itself before")
    func baselines() throws {
        let stages = RolloutPlan.stages(cohorts: [
            try Fixtures.cohort("free", order: 1, workers: 3, canary: 1),
            try Fixtures.cohort("pro", order: 2, workers: 2),
        ])
        #expect(RolloutPlan.baseline(forStage: 0, in: stages) == .concurrent(pool: "free", slots: [1, 2]))
        #expect(RolloutPlan.baseline(forStage: 1, in: stages) == .beforeStage(pool: "free", slots: [1, 2]))
        #expect(RolloutPlan.baseline(forStage: 2, in: stages) == .beforeStage(pool: "pro", slots: [0, 1]))
        #expect(RolloutPlan.baseline(forStage: 3, in: stages) == nil)
    }
}
