import BulkheadCore
import Foundation
import Rollout
import Testing

/// The host's local guard: a pure value, driven with made-up observations and a
/// clock that is just a number.
struct LocalGuardTests {
    /// Runtime 3 → 4, rollout 7, on the free canary (slot 0); free's other slot runs 3.
    static func canary(maxCrashes: Int = 0, maxNewSignatures: Int = 0) -> GuardAssignment {
        GuardAssignment(
            rollout: 7, kind: .runtime, stage: 0, targetVersion: 4, previousVersion: 3,
            pools: ["free": .init(slots: [0], maxCrashes: maxCrashes, maxNewSignatures: maxNewSignatures)])
    }

    static let boom = "runtime: boom"

    func watching(_ assignment: GuardAssignment = canary(), known: Set<String> = []) -> LocalGuard {
        var localGuard = LocalGuard()
        localGuard.update([assignment])
        localGuard.learn(kind: assignment.kind, pool: "free", signatures: known)
        return localGuard
    }

    func putBack(_ actions: [LocalGuardAction]) -> LocalGuardReport? {
        guard case .putBack(let report)? = actions.first else { return nil }
        return report
    }

    @Test func aCrashLoopPutsTheSlotBackOnThePreviousVersion() throws {
        var localGuard = watching()
        #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 10).isEmpty, "one crash is not a loop")
        let actions = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 11)
        let report = try #require(putBack(actions))
        #expect(report.restoredVersion == 3, "back on the last completed version")
        #expect(report.targetVersion == 4)
        #expect(report.rollout == 7)
        #expect(report.slots == ["free": [0]])
        #expect(report.reason == .crashLoop(pool: "free", slot: 0, crashes: 2, threshold: 2))
        #expect(report.time == 11)
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == 3)
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 1) == nil, "slot 1 never had the new version")
        #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 12).isEmpty, "it trips once")
    }

    @Test func aCrashBlamedOnACustomerScriptDoesNotCount() {
        var localGuard = watching()
        for second in 0..<5 {
            #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: "c-free/poison", now: Double(second)).isEmpty)
        }
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == nil)
        // One more, not blamed: still only one that counts.
        #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 6).isEmpty)
    }

    @Test func aBinaryCountsEveryCrashBlamedOrNot() {
        var assignment = Self.canary()
        assignment.kind = .binary
        var localGuard = watching(assignment)
        _ = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: "c-free/poison", now: 1)
        let actions = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: "c-free/poison", now: 2)
        #expect(putBack(actions)?.kind == .binary, "the new binary runs the script's call: its crash may be the build's")
    }

    @Test func crashesOfSlotsWithoutTheNewVersionDoNotCount() {
        var localGuard = watching()
        for second in 0..<4 {
            #expect(localGuard.workerCrashed(pool: "free", slot: 1, blamedScript: nil, now: Double(second)).isEmpty)
            #expect(localGuard.workerCrashed(pool: "pro", slot: 0, blamedScript: nil, now: Double(second)).isEmpty)
        }
    }

    @Test func theGuardIsNeverStricterThanTheGate() throws {
        var localGuard = watching(Self.canary(maxCrashes: 3))
        for second in 0..<3 {
            #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: Double(second)).isEmpty)
        }
        let report = try #require(putBack(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 4)))
        #expect(report.reason == .crashLoop(pool: "free", slot: 0, crashes: 4, threshold: 4), "max_crashes 3 allows 3")
    }

    @Test func aSignatureThePoolAlreadyHadDoesNotTrip() {
        var localGuard = watching(known: [Self.boom])
        #expect(localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: [Self.boom], now: 1).isEmpty)
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == nil)
    }

    @Test func aSignatureLearnedFromThePoolsOtherSlotsDuringTheStageDoesNotTrip() {
        var localGuard = watching()
        localGuard.learn(kind: .runtime, pool: "free", signatures: [Self.boom])
        #expect(localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: [Self.boom], now: 1).isEmpty)
    }

    @Test func aNewPlatformSignatureTripsAtOnce() throws {
        var localGuard = watching(known: ["runtime: old trouble"])
        #expect(localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: ["runtime: old trouble"], now: 1).isEmpty)
        let actions = localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: ["runtime: old trouble", Self.boom], now: 2)
        let report = try #require(putBack(actions))
        #expect(report.restoredVersion == 3)
        #expect(report.reason == .newSignatures(pool: "free", slot: 0, signatures: [Self.boom], allowed: 0))
        #expect(report.description.contains("runtime 4 put back to 3 on free [0]"), "\(report)")
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == 3)
        #expect(localGuard.heldVersion(kind: .rules, pool: "free", slot: 0) == nil, "only the kind that tripped is held")
    }

    @Test func newSignaturesUpToTheGatesAllowanceDoNotTrip() {
        var localGuard = watching(Self.canary(maxNewSignatures: 1))
        #expect(localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: ["a"], now: 1).isEmpty)
        #expect(!localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: ["a", "b"], now: 2).isEmpty)
    }

    @Test func aWiderStageIsWatchedAndPutBackWhole() throws {
        var localGuard = watching()
        _ = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 1)
        var wider = Self.canary()
        wider.stage = 2
        wider.pools = ["free": .init(slots: [0, 1]), "pro": .init(slots: [0, 1])]
        localGuard.update([wider])
        localGuard.learn(kind: .runtime, pool: "pro", signatures: [])
        // The crash counted in the canary stage is kept: same rollout, same version.
        let report = try #require(putBack(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 2)))
        #expect(report.slots == ["free": [0, 1], "pro": [0, 1]], "every slot with the new version goes back")
        #expect(report.stage == 2)
        #expect(localGuard.heldVersion(kind: .runtime, pool: "pro", slot: 1) == 3)
    }

    @Test func theHoldEndsWithTheAssignmentAndANewRolloutStartsAfresh() {
        var localGuard = watching()
        _ = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 1)
        _ = localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 2)
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == 3)
        localGuard.update([])
        #expect(localGuard.heldVersion(kind: .runtime, pool: "free", slot: 0) == nil, "rolled back: nothing to hold")
        var next = Self.canary()
        next.rollout = 8
        next.targetVersion = 5
        localGuard.update([next])
        #expect(localGuard.workerCrashed(pool: "free", slot: 0, blamedScript: nil, now: 3).isEmpty, "crashes of the last rollout are not this one's")
    }

    @Test func theReportIsCodable() throws {
        var localGuard = watching()
        let report = try #require(putBack(localGuard.observe(kind: .runtime, pool: "free", slot: 0, signatures: [Self.boom], now: 5)))
        let decoded = try JSONDecoder().decode(LocalGuardReport.self, from: JSONEncoder().encode(report))
        #expect(decoded == report)
    }
}

/// The machine's side: a guard's report rolls the rollout back like a failed gate.
struct HostGuardInputTests {
    func running(stage: Int = 0) throws -> RolloutMachine {
        var machine = try RolloutMachine(kind: .runtime, targetVersion: 4, previousVersion: 3, stages: Fixtures.stages(), now: 0)
        _ = try machine.start(now: 0)
        for index in 0..<stage { _ = try machine.promote(now: Double(index + 1), by: "op") }
        return machine
    }

    func report(stage: Int = 0, version: Int = 4, kind: ArtifactKind = .runtime) -> LocalGuardReport {
        LocalGuardReport(rollout: 7, kind: kind, stage: stage, targetVersion: version, restoredVersion: 3, slots: ["free": [0]],
                         reason: .crashLoop(pool: "free", slot: 0, crashes: 2, threshold: 2), time: 9)
    }

    @Test func aGuardReportRollsBackEveryStageWithTheNewVersion() throws {
        var machine = try running(stage: 2)
        let actions = machine.hostGuardTripped(report(stage: 2), now: 10)
        #expect(actions.last == .rollback(toVersion: 3, stages: [0, 1, 2]))
        guard case .record(let decision)? = actions.first else {
            Issue.record("the rollback is recorded first: \(actions)")
            return
        }
        #expect(decision.by == "local guard")
        #expect(decision.event == .failed)
        #expect(decision.message.contains("crash-looped"), "\(decision.message)")
        #expect(machine.decisions.last == decision)
        guard case .rolledBack(let stage, let reason) = machine.state else {
            Issue.record("rolled back, not \(machine.state)")
            return
        }
        #expect(stage == 2)
        #expect(reason.hasPrefix("local guard: "))
        #expect(machine.progress == [.passed, .passed, .failed, .skipped])
        #expect(machine.version(forPool: "free", slot: 0) == 3, "the driver keeps the slot on the previous version")
    }

    @Test func pausedAndFrozenRolloutsRollBackToo() throws {
        var machine = try running()
        _ = try machine.pause(now: 1, by: "op")
        _ = machine.setFrozen(true, now: 2)
        let actions = machine.hostGuardTripped(report(), now: 3)
        #expect(actions.last == .rollback(toVersion: 3, stages: [0]))
        #expect(machine.decisions.last?.message.contains("a freeze never stops an automatic rollback") == true)
    }

    @Test func aReportOfAnotherVersionOrAfterTheEndChangesNothing() throws {
        var machine = try running()
        #expect(machine.hostGuardTripped(report(version: 9), now: 1).isEmpty)
        #expect(machine.hostGuardTripped(report(kind: .rules), now: 1).isEmpty)
        _ = try machine.abort(now: 2, by: "op")
        let before = machine
        #expect(machine.hostGuardTripped(report(), now: 3).isEmpty)
        #expect(machine == before)
    }
}
