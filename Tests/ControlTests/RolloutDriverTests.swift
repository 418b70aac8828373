import BulkheadCore
import Control
import Foundation
import Logging
import Rollout
import Store
import Synchronization
import Testing

/// The driver against a real control store and a real host replica in a temp dir:
/// the host's side is played by writing `StageReport`s into the replica, as the
/// supervisor's stage runner does, and what the driver decided is read back from
/// the control store (the machine, the feed, the audit log).
@Suite struct RolloutDriverTests {
    /// A clock the test moves by hand.
    final class TestClock: Sendable {
        let seconds = Mutex(1_000_000.0)
        var now: Double { seconds.withLock { $0 } }
        func advance(_ by: Double) { seconds.withLock { $0 += by } }
    }

    /// The producer's process checks are not exercised here (rules are validated in
    /// process); a runtime or binary reaching them is a test bug.
    struct NoProcessChecks: ArtifactProcessChecks {
        func checkRuntime(_ source: String) async -> ControlError? {
            ControlError(.internal, "no runtime checks in this test")
        }
        func probeBinary(_ path: String) async -> ControlError? {
            ControlError(.internal, "no binary probes in this test")
        }
    }

    /// A control store, a host replica and a driver over pools free (2 workers, 1
    /// canary) and pro (2 workers): stages "free canary", "free", "pro".
    final class Fixture {
        let directory: URL
        let store: SQLiteStore
        let replica: HostReplica
        let clock = TestClock()
        let driver: RolloutDriver

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("driver-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let store = try SQLiteStore(path: directory.appendingPathComponent("bulkhead.sqlite").path)
            self.store = store
            replica = try HostReplica(path: directory.appendingPathComponent("host.sqlite").path)
            let cohorts = [
                try Self.cohort("free", order: 1, workers: 2, canary: 1),
                try Self.cohort("pro", order: 2, workers: 2, canary: 0),
            ]
            let clock = clock
            driver = RolloutDriver(
                store: { store }, replicaPath: replica.path, checks: NoProcessChecks(), cohorts: cohorts,
                logger: Logger(label: "test.driver"), clock: { clock.now })
            driver.start(interval: nil)
        }

        deinit {
            driver.stop()
            try? FileManager.default.removeItem(at: directory)
        }

        static func cohort(_ name: String, order: Int, workers: Int, canary: Int) throws -> CohortConfiguration {
            try CohortConfiguration.parse(
                """
                name = "\(name)"
                order = \(order)
                port = 0
                workers = \(workers)
                canary_workers = \(canary)
                [gate]
                bake_seconds = 10
                max_bake_seconds = 60
                min_requests = 50
                """, file: "cohorts/\(name).toml")
        }

        /// Starts a rules rollout; fails the test when refused.
        func start() async throws -> Int {
            try await driver.startRollout(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test").get()
        }

        /// What the driver stored of rollout `id`.
        func stored(_ id: Int) throws -> RolloutMachine {
            let record = try #require(try store.rollout(id: id))
            return try JSONDecoder().decode(RolloutMachine.self, from: record.state)
        }

        /// Writes a report into the replica as the host would.
        func report(_ report: StageReport) throws {
            try replica.saveStageReport(rollout: report.rollout, report: try JSONEncoder().encode(report))
        }
    }

    /// A healthy window: 500 requests, no errors, p99 20 ms.
    static let healthy = StageSample(requests: 500, p99Milliseconds: 20)

    @Test func aReportOnAStaleStageOrWindowIsIgnored() async throws {
        let fixture = try Fixture()
        let id = try await fixture.start()
        let started = try fixture.stored(id)
        #expect(started.currentStage == 0)
        let bake = try #require(started.bakeStartedAt)
        fixture.clock.advance(20)
        let decisions = started.decisions.count
        // Passing numbers, but for stage 1 (not begun), for another version, and for
        // stage 0 over a window that began before the stage's bake.
        try fixture.report(StageReport(rollout: id, stage: 1, version: 1, acknowledgedAt: bake + 0.1, measuredAt: bake + 20,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        try fixture.report(StageReport(rollout: id, stage: 0, version: 7, acknowledgedAt: bake + 0.1, measuredAt: bake + 20.1,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        try fixture.report(StageReport(rollout: id, stage: 0, version: 1, acknowledgedAt: bake - 5, measuredAt: bake + 20.2,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        let after = try fixture.stored(id)
        #expect(after.state == .running(stage: 0), "\(after.state)")
        #expect(after.decisions.count == decisions, "no decision was taken on a stale report")
        #expect(try fixture.driver.status(id: id).get().currentStage == 0)
    }

    @Test func aPassingReportAdvancesTheStageAndWritesARolloutChange() async throws {
        let fixture = try Fixture()
        let id = try await fixture.start()
        let bake = try #require(try fixture.stored(id).bakeStartedAt)
        let before = try fixture.store.feedBounds().latest
        fixture.clock.advance(11)
        try fixture.report(StageReport(rollout: id, stage: 0, version: 1, acknowledgedAt: bake + 0.2, measuredAt: bake + 11,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        let after = try fixture.stored(id)
        #expect(after.state == .running(stage: 1), "\(after.state)")
        #expect(after.stagesWithNewVersion == [0, 1])
        #expect(try fixture.store.rollout(id: id)?.status == "running stage 1")
        let changes = try fixture.store.changes(after: before, limit: 100).map(\.change)
        #expect(changes.contains(.rollout(id)), "the feed tells the host: \(changes)")
        let audit = try fixture.store.auditEvents(after: 0, limit: 1000).filter { $0.action.rawValue == "rollout.decision" }
        #expect(audit.contains { $0.detail.contains("passed") }, "the decision is audited")
        // The same report again (already judged) decides nothing more.
        fixture.clock.advance(11)
        fixture.driver.drive()
        #expect(try fixture.stored(id).state == .running(stage: 1))
        // The host never wrote the replica's reports through the driver: it only reads.
        #expect(try fixture.replica.stageReports().count == 1)
    }

    @Test func aGuardTripInAReportRollsBack() async throws {
        let fixture = try Fixture()
        let id = try await fixture.start()
        let bake = try #require(try fixture.stored(id).bakeStartedAt)
        fixture.clock.advance(1)
        let trip = LocalGuardReport(
            rollout: id, kind: .rules, stage: 0, targetVersion: 1, restoredVersion: 0, slots: ["free": [0]],
            reason: .crashLoop(pool: "free", slot: 0, crashes: 2, threshold: 2), time: bake + 0.8)
        try fixture.report(StageReport(rollout: id, stage: 0, version: 1, acknowledgedAt: bake + 0.1, measuredAt: bake + 1,
                                       sample: StageSample(requests: 3), baseline: nil, guardTrip: trip))
        fixture.driver.drive()
        let after = try fixture.stored(id)
        guard case .rolledBack(let stage, let reason) = after.state else {
            Issue.record("not rolled back: \(after.state)")
            return
        }
        #expect(stage == 0)
        #expect(reason.contains("local guard"))
        #expect(after.decisions.last?.by == "local guard")
        #expect(after.stagesWithNewVersion.isEmpty)
        #expect(try fixture.store.rollout(id: id)?.finished == true)
        #expect(try fixture.store.runningRollout(kind: .rules) == nil)
    }

    @Test func aRefusedStartStoresNothing() async throws {
        let fixture = try Fixture()
        // Invalid rules: refused by validation.
        let invalid = await fixture.driver.startRollout(kind: .rules, content: #"{"rules": 3}"#, actor: "test")
        #expect(throws: ControlError.self) { try invalid.get() }
        // Frozen on the host (its replica): refused before anything is written.
        try fixture.replica.setFrozen(true, actor: "test")
        let bounds = try fixture.store.feedBounds()
        let frozen = await fixture.driver.startRollout(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test")
        switch frozen {
        case .success(let id): Issue.record("started rollout \(id) while frozen")
        case .failure(let error): #expect(error.kind == .frozen, "\(error)")
        }
        #expect(try fixture.store.latestArtifact(kind: .rules) == nil, "no artifact stored")
        #expect(try fixture.store.rollouts(limit: 10).isEmpty, "no rollout stored")
        #expect(try fixture.store.feedBounds() == bounds, "nothing in the feed")
    }

    @Test func aPinOnTheHostRefusesAStartAndAbortsARunningRolloutNamingBreakGlass() async throws {
        let fixture = try Fixture()
        let id = try await fixture.start()
        try fixture.replica.setPin(.rules, version: 0, actor: "break-glass:test")
        let bounds = try fixture.store.feedBounds()
        let refused = await fixture.driver.startRollout(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test")
        switch refused {
        case .success(let other): Issue.record("started rollout \(other) while the host pins the rules")
        case .failure(let error): #expect(error.kind == .rolloutRunning || error.kind == .pinned, "\(error)")
        }
        #expect(try fixture.store.feedBounds() == bounds, "a refused start writes nothing")
        fixture.driver.drive()
        let stored = try fixture.stored(id)
        #expect(stored.state.isFinished, "\(stored.state)")
        #expect(stored.decisions.last?.by.contains("break glass") == true, "the decision names break glass: \(stored.decisions.last.map { "\($0)" } ?? "none")")
        #expect(try fixture.store.runningRollout(kind: .rules) == nil)
        // With the rollout gone, a start of the pinned kind is refused as pinned, storing nothing.
        let pinned = await fixture.driver.startRollout(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test")
        switch pinned {
        case .success(let other): Issue.record("started rollout \(other) while the host pins the rules")
        case .failure(let error): #expect(error.kind == .pinned && error.message.contains("unpin"), "\(error)")
        }
        #expect(try fixture.store.latestArtifact(kind: .rules)?.version == 1, "only the first rollout's version is stored")
    }

    @Test func aRolloutAfterAnUnpinStartsFromTheVersionTheHostRuns() async throws {
        let fixture = try Fixture()
        // The control store's last completed rules are v2 (found bad later); break
        // glass pinned the host to v1 and was lifted, which leaves v1 running there.
        for _ in 1...2 { _ = try fixture.store.putArtifact(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test") }
        for pool in ["free", "pro"] { try fixture.store.setActiveVersion(2, of: .rules, inPool: pool, actor: "test") }
        try fixture.replica.keepActiveVersion(1, of: .rules, pools: ["free", "pro"], actor: "break-glass:test")
        let id = try await fixture.start()
        // What it replaces, and what a failed gate would put back, is v1, not the bad v2.
        #expect(try fixture.stored(id).previousVersion == 1)
        #expect(try fixture.store.rollout(id: id)?.fromVersion == 1)
    }

    @Test func aFreezeOnTheHostStopsTheStageFromAdvancing() async throws {
        let fixture = try Fixture()
        let id = try await fixture.start()
        let started = try fixture.stored(id)
        let bake = try #require(started.bakeStartedAt)
        try fixture.replica.setFrozen(true, actor: "break-glass:test")
        fixture.clock.advance(60)
        try fixture.report(StageReport(rollout: id, stage: 0, version: 1, acknowledgedAt: bake + 0.1, measuredAt: bake + 60,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        #expect(try fixture.stored(id).currentStage == 0, "no advance while the host is frozen")
        try fixture.replica.setFrozen(false, actor: "break-glass:test")
        fixture.driver.drive()
        // Unfrozen, the stage bakes again from now; a report over the new window passes it.
        let rebake = try #require(try fixture.stored(id).bakeStartedAt)
        fixture.clock.advance(11)
        try fixture.report(StageReport(rollout: id, stage: 0, version: 1, acknowledgedAt: rebake + 0.2, measuredAt: rebake + 11,
                                       sample: Self.healthy, baseline: Self.healthy))
        fixture.driver.drive()
        let after = try fixture.stored(id)
        #expect(after.state == .running(stage: 1), "it advances once unfrozen: \(after.state)")
    }

    /// Pro's policy: a smaller instruction limit, another gate and the first place
    /// in the rollout order.
    static let proPolicy = """
        name = "pro"
        order = 0
        port = 9999        # host-local: ignored
        workers = 8        # host-local: ignored
        [limits]
        instructions = 5_000_000
        [gate]
        bake_seconds = 30
        max_bake_seconds = 90
        """

    /// Passes every stage of rollout `id`, one report each, until it ends.
    func passEveryStage(_ fixture: Fixture, _ id: Int) throws {
        for _ in 0..<10 {
            let machine = try fixture.stored(id)
            guard let stage = machine.currentStage, let bake = machine.bakeStartedAt else { return }
            fixture.clock.advance(machine.stages[stage].gate.bakeSeconds + 1)
            try fixture.report(StageReport(
                rollout: id, stage: stage, version: machine.targetVersion, acknowledgedAt: bake + 0.1,
                measuredAt: fixture.clock.now, sample: Self.healthy, baseline: Self.healthy))
            fixture.driver.drive()
        }
    }

    @Test func aPolicyRollsOutToItsOwnCohortUnderTheGateItReplacesAndThenPlansTheNext() async throws {
        let fixture = try Fixture()
        let id = try await fixture.driver.startRollout(kind: .policy, content: Self.proPolicy, actor: "test").get()
        let started = try fixture.stored(id)
        // Pro's pools alone, judged by pro's gate from its cohort file (bake 10 s),
        // not by the 30 s the new policy brings.
        #expect(started.stages.map(\.name) == ["pro"])
        #expect(started.stages.map(\.gate.bakeSeconds) == [10])
        #expect(started.previousVersion == 0)
        try passEveryStage(fixture, id)
        let ended = try fixture.stored(id).state
        #expect(ended == .completed, "\(ended)")
        #expect(try fixture.store.activeVersion(of: .policy, inPool: "pro") == 1)
        #expect(try fixture.store.activeVersion(of: .policy, inPool: "free") == nil, "free's policy is not pro's")
        #expect(try fixture.store.activePolicy(ofPool: "pro")?.limits.instructions == 5_000_000)

        // The next rollout is planned under the policy: pro comes first now, with its new gate.
        let next = try await fixture.start()
        let planned = try fixture.stored(next)
        #expect(planned.stages.map(\.name) == ["pro", "free"], "\(planned.stages.map(\.name))")
        #expect(planned.stages.first?.gate.bakeSeconds == 30)
    }

    @Test(arguments: [
        ("name = \"pro\"\n[limits]\ninstructions = 5\n", "order"),
        ("name = \"pro\"\norder = 2\n[limits]\ninstructions = 5\n", "between 1000"),
        ("name = \"pro\"\norder = 2\nownerz = 1\n", "not a known key"),
        ("name = \"gold\"\norder = 2\n", "no such pool"),
        ("not toml at all [", "not valid TOML"),
    ])
    func aPolicyThatDoesNotParseOrNamesNoPoolIsRefusedAndStoresNothing(content: String, says: String) async throws {
        let fixture = try Fixture()
        let bounds = try fixture.store.feedBounds()
        switch await fixture.driver.startRollout(kind: .policy, content: content, actor: "test") {
        case .success(let id): Issue.record("started rollout \(id) of a bad policy")
        case .failure(let error):
            #expect(error.kind == .invalidPolicy, "\(error)")
            #expect(error.message.contains(says), "\(error.message)")
        }
        #expect(try fixture.store.latestArtifact(kind: .policy) == nil)
        #expect(try fixture.store.feedBounds() == bounds)
    }
}
