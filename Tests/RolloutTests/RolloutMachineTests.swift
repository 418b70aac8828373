import BulkheadCore
import Foundation
import Rollout
import Testing

/// The clock is just the `now` argument: t = 1000 is when each rollout starts, and
/// every stage bakes 10 s (max 60 s) and needs 50 requests.
@Suite("Rollout state machine")
struct RolloutMachineTests {
    private func started(gate: CohortConfiguration.Gate = Fixtures.gate()) throws -> RolloutMachine {
        var machine = try Fixtures.machine(gate: gate)
        _ = try machine.start(now: 1000)
        return machine
    }

    /// Passes the current stage with a healthy window `bake` seconds after its start.
    private func passCurrentStage(_ machine: inout RolloutMachine) throws -> [RolloutAction] {
        let startedAt = try #require(machine.bakeStartedAt)
        return machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: startedAt + 10)
    }

    // MARK: Creating and starting

    @Test("a new rollout is pending; start ships the canary and logs it")
    func start() throws {
        var machine = try Fixtures.machine()
        #expect(machine.state == .pending)
        #expect(machine.currentStage == nil)
        let actions = try machine.start(now: 1000)
        #expect(actions.events == [.started])
        #expect(actions.effects == [.apply(stage: 0, version: 4)])
        #expect(machine.state == .running(stage: 0))
        #expect(machine.progress == [.baking, .pending, .pending, .pending])
        #expect(machine.stagesWithNewVersion == [0])
        #expect(machine.bakeStartedAt == 1000)
        #expect(machine.decisions.first?.message == "rolling rules 3 → 4 through free canary, free, pro, enterprise")
    }

    @Test("a plan must have stages with slots, a new version and a real clock")
    func invalidCreation() {
        #expect(throws: RolloutError.emptyPlan) {
            try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1, stages: [], now: 0)
        }
        let hollow = [Stage(pool: "free", slots: [], name: "free", gate: Fixtures.gate())]
        #expect(throws: RolloutError.stageWithoutSlots(stage: 0, name: "free")) {
            try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1, stages: hollow, now: 0)
        }
        #expect(throws: RolloutError.sameVersion(2)) {
            try RolloutMachine(kind: .binary, targetVersion: 2, previousVersion: 2, stages: Fixtures.stages(), now: 0)
        }
        #expect(throws: RolloutError.self) {
            try RolloutMachine(kind: .binary, targetVersion: 2, previousVersion: 1, stages: Fixtures.stages(), now: .nan)
        }
    }

    // MARK: Passing

    @Test("healthy stages pass one after another after their bake, then the rollout completes")
    func happyPath() throws {
        var machine = try started()
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1005).isEmpty)
        #expect(machine.lastVerdict?.outcome == .keepBaking)

        var actions = machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1010)
        #expect(actions.events == [.passed])
        #expect(actions.effects == [.apply(stage: 1, version: 4)])
        #expect(machine.state == .running(stage: 1))
        #expect(machine.bakeStartedAt == 1010)

        #expect(try passCurrentStage(&machine).effects == [.apply(stage: 2, version: 4)])
        #expect(try passCurrentStage(&machine).effects == [.apply(stage: 3, version: 4)])
        actions = try passCurrentStage(&machine)
        #expect(actions.events == [.passed, .completed])
        #expect(actions.effects == [.completed])

        #expect(machine.state == .completed)
        #expect(machine.progress == [.passed, .passed, .passed, .passed])
        #expect(machine.stagesWithNewVersion == [0, 1, 2, 3])
        #expect(machine.bakeStartedAt == nil)
        #expect(machine.decisions.map(\.event) == [.started, .passed, .passed, .passed, .passed, .completed])
        // Every pass is logged with the numbers that decided it.
        let firstPass = try #require(machine.decisions[1].verdict)
        #expect(firstPass.requests == 100)
        #expect(firstPass.platformErrors.baselineTotal == 100)
        #expect(machine.decisions[1].by == "gate")
        // A finished rollout ignores further samples.
        #expect(machine.observe(stage: Fixtures.healthy, baseline: nil, now: 2000).isEmpty)
    }

    // MARK: Failing

    @Test("the outage's signature in the canary rolls back the canary alone, at once")
    func newSignatureInCanary() throws {
        var machine = try started()
        let broken = Fixtures.sample(requests: 4, platformErrors: 4, signatures: [Fixtures.executeSignature: 4])
        let actions = machine.observe(stage: broken, baseline: Fixtures.sample(requests: 5), now: 1000.3)
        #expect(actions.events == [.failed])
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0])])
        guard case .rolledBack(let stage, let reason) = machine.state else {
            Issue.record("expected a rollback, got \(machine.state)")
            return
        }
        #expect(stage == 0)
        #expect(reason.contains("field 'execute'"))
        #expect(machine.progress == [.failed, .skipped, .skipped, .skipped])
        #expect(machine.stagesWithNewVersion.isEmpty)
        #expect(machine.version(forPool: "free", slot: 0) == 3)
        let verdict = try #require(machine.decisions.last?.verdict)
        #expect(verdict.newSignatures == [Fixtures.executeSignature: 4])
        #expect(verdict.elapsedSeconds < 0.5)
        // Once rolled back, nothing more happens.
        #expect(machine.observe(stage: broken, baseline: nil, now: 1001).isEmpty)
    }

    @Test("a failure at the third stage rolls back every stage that got the new version")
    func failureRollsBackAllApplied() throws {
        var machine = try started()
        _ = try passCurrentStage(&machine)
        _ = try passCurrentStage(&machine)
        let slow = Fixtures.sample(requests: 100, p99: 400)
        #expect(machine.observe(stage: slow, baseline: Fixtures.healthy, now: 1025).isEmpty)  // still baking
        let actions = machine.observe(stage: slow, baseline: Fixtures.healthy, now: 1030)
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0, 1, 2])])
        #expect(machine.progress == [.passed, .passed, .failed, .skipped])
        #expect(machine.decisions.last?.verdict?.failedChecks == [.p99])
        #expect(machine.decisions.last?.message.contains("rolling back free canary, free, pro to version 3") == true)
    }

    @Test("a significant error-rate increase fails the stage; an insignificant one does not")
    func errorRateIncrease() throws {
        let gate = Fixtures.gate(maxErrorRate: 0.5, maxIncrease: 0.0005)
        var noisy = try started(gate: gate)
        let twoPerMille = Fixtures.sample(requests: 1000, platformErrors: 2)
        let onePerMille = Fixtures.sample(requests: 1000, platformErrors: 1)
        #expect(noisy.observe(stage: twoPerMille, baseline: onePerMille, now: 1010).events == [.passed])

        var broken = try started(gate: gate)
        let thirtyPerMille = Fixtures.sample(requests: 1000, platformErrors: 30)
        let actions = broken.observe(stage: thirtyPerMille, baseline: onePerMille, now: 1010)
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0])])
        let verdict = try #require(actions.first?.decision?.verdict)
        #expect(verdict.failedChecks == [.errorRateIncrease])
        #expect(verdict.platformErrors.test?.method == .pooledZ)
        #expect((verdict.platformErrors.test?.pValue ?? 1) < 1e-7)
    }

    @Test("crashes are counted since the stage began, across a restarted window")
    func crashCounting() throws {
        var machine = try started(gate: Fixtures.gate(maxCrashes: 1))
        #expect(machine.observe(stage: Fixtures.sample(requests: 10, crashes: 1), baseline: nil, now: 1001).isEmpty)
        // A supervisor restart opens a new window; the crash before it still counts.
        _ = machine.restored(now: 1002)
        #expect(machine.observe(stage: Fixtures.sample(requests: 0), baseline: nil, now: 1003).isEmpty)
        let actions = machine.observe(stage: Fixtures.sample(requests: 5, crashes: 1), baseline: nil, now: 1004)
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0])])
        #expect(machine.decisions.last?.verdict?.crashes == 2)
        #expect(machine.decisions.last?.verdict?.failedChecks == [.crashes])
    }

    @Test("a new stage starts its crash count from zero")
    func crashesResetPerStage() throws {
        var machine = try started(gate: Fixtures.gate(maxCrashes: 1))
        let oneCrash = Fixtures.sample(requests: 100, crashes: 1)
        #expect(machine.observe(stage: oneCrash, baseline: Fixtures.healthy, now: 1010).events == [.passed])
        #expect(machine.observe(stage: oneCrash, baseline: Fixtures.healthy, now: 1020).events == [.passed])
    }

    // MARK: Signatures known to the old version

    @Test("signatures known before the rollout or seen in any baseline are never new")
    func learnedSignatures() throws {
        var machine = try RolloutMachine(
            kind: .runtime, targetVersion: 8, previousVersion: 7, stages: Fixtures.stages(), now: 0,
            knownSignatures: ["app.lua: old bug"])
        _ = try machine.start(now: 0)
        let withOld = Fixtures.sample(requests: 100, signatures: ["app.lua: old bug": 2])
        // The canary's baseline shows a rare error; the canary passes.
        let baseline = Fixtures.sample(requests: 100, signatures: ["rules.lua: rare": 1])
        #expect(machine.observe(stage: withOld, baseline: baseline, now: 10).events == [.passed])
        #expect(machine.knownSignatures.contains("rules.lua: rare"))
        // The next stage's own baseline happens not to show it: still not new.
        let rare = Fixtures.sample(requests: 100, signatures: ["rules.lua: rare": 1])
        #expect(machine.observe(stage: rare, baseline: Fixtures.healthy, now: 20).events == [.passed])
    }

    // MARK: Inconclusive

    @Test("too little traffic until max_bake pauses for an operator; resume restarts the bake")
    func inconclusiveThenResume() throws {
        var machine = try started()
        let trickle = Fixtures.sample(requests: 10)
        #expect(machine.observe(stage: trickle, baseline: Fixtures.healthy, now: 1030).isEmpty)
        let actions = machine.observe(stage: trickle, baseline: Fixtures.healthy, now: 1060)
        #expect(actions.events == [.inconclusive])
        guard case .paused(let stage, .inconclusive(let detail)) = machine.state else {
            Issue.record("expected an inconclusive pause, got \(machine.state)")
            return
        }
        #expect(stage == 0)
        #expect(detail.contains("10 of 50 requests"))
        #expect(actions.effects == [.paused(.inconclusive(detail: detail))])
        #expect(machine.progress[0] == .baking)
        #expect(machine.decisions.last?.verdict?.outcome == .inconclusive)
        // Paused: more samples change nothing, even healthy ones.
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1070).isEmpty)

        let resumed = try machine.resume(now: 1100, by: "ana")
        #expect(resumed.events == [.resumed])
        #expect(resumed.effects == [.resetWindow(stage: 0)])
        #expect(machine.state == .running(stage: 0))
        #expect(machine.bakeStartedAt == 1100)
        // The bake and its max-bake timeout both restarted.
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1105).isEmpty)
        #expect(machine.observe(stage: trickle, baseline: Fixtures.healthy, now: 1150).isEmpty)
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1155).events == [.passed])
    }

    @Test("a stage paused as inconclusive still rolls back when it fails")
    func failureWhilePaused() throws {
        var machine = try started()
        _ = machine.observe(stage: Fixtures.sample(requests: 1), baseline: nil, now: 1060)
        #expect(machine.currentStage == 0)
        let broken = Fixtures.sample(requests: 2, signatures: [Fixtures.executeSignature: 1])
        let actions = machine.observe(stage: broken, baseline: Fixtures.healthy, now: 1070)
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0])])
        #expect(machine.progress[0] == .failed)
    }

    // MARK: Operator commands

    @Test("an operator's pause holds the stage; resume keeps its bake clock")
    func pauseAndResume() throws {
        var machine = try started()
        let paused = try machine.pause(now: 1002, by: "ana")
        #expect(paused.events == [.paused])
        #expect(paused.effects == [.paused(.requested(by: "ana"))])
        #expect(machine.state == .paused(stage: 0, reason: .requested(by: "ana")))
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1015).isEmpty)
        #expect(machine.progress[0] == .baking)

        let resumed = try machine.resume(now: 1020, by: "ana")
        #expect(resumed.events == [.resumed])
        #expect(resumed.effects.isEmpty)
        #expect(machine.bakeStartedAt == 1000)
        let actions = machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1020.2)
        #expect(actions.effects == [.apply(stage: 1, version: 4)])
        #expect(machine.decisions.map(\.by) == ["operator", "ana", "ana", "gate"])
    }

    @Test("promote passes the stage now and starts the next; on the last stage it completes")
    func promote() throws {
        var machine = try started()
        _ = machine.observe(stage: Fixtures.sample(requests: 3), baseline: nil, now: 1001)
        let actions = try machine.promote(now: 1001.5, by: "ana")
        #expect(actions.events == [.promoted])
        #expect(actions.effects == [.apply(stage: 1, version: 4)])
        #expect(machine.progress[0] == .passed)
        #expect(machine.decisions.last?.by == "ana")
        #expect(machine.decisions.last?.verdict?.requests == 3)  // the last numbers go with it
        _ = try machine.promote(now: 1002, by: "ana")
        _ = try machine.promote(now: 1003, by: "ana")
        let last = try machine.promote(now: 1004, by: "ana")
        #expect(last.events == [.promoted, .completed])
        #expect(last.effects == [.completed])
        #expect(machine.state == .completed)
        #expect(machine.decisions.last?.by == "ana")
        #expect(machine.progress == [.passed, .passed, .passed, .passed])
    }

    @Test("abort rolls back every stage with the new version at once")
    func abortMidRollout() throws {
        var machine = try started()
        _ = try passCurrentStage(&machine)
        let actions = try machine.abort(now: 1012, by: "ana")
        #expect(actions.events == [.aborted])
        #expect(actions.effects == [.rollback(toVersion: 3, stages: [0, 1])])
        #expect(machine.state == .aborted(by: "ana"))
        #expect(machine.progress == [.passed, .aborted, .skipped, .skipped])
        #expect(machine.stagesWithNewVersion.isEmpty)
        #expect(machine.observe(stage: Fixtures.healthy, baseline: nil, now: 1020).isEmpty)
    }

    @Test("abort of a paused rollout rolls back; of a pending one just ends it")
    func abortPausedAndPending() throws {
        var paused = try started()
        _ = try paused.pause(now: 1001, by: "ana")
        #expect(try paused.abort(now: 1002, by: "bo").effects == [.rollback(toVersion: 3, stages: [0])])

        var pending = try Fixtures.machine()
        let actions = try pending.abort(now: 1000, by: "break-glass")
        #expect(actions.events == [.aborted])
        #expect(actions.effects.isEmpty)
        #expect(pending.state == .aborted(by: "break-glass"))
        #expect(pending.progress == [.skipped, .skipped, .skipped, .skipped])
    }

    @Test("operations that do not apply throw, change nothing and log nothing")
    func invalidTransitions() throws {
        func refused(_ machine: RolloutMachine, _ operation: (inout RolloutMachine) throws -> [RolloutAction]) -> Bool {
            var copy = machine
            do {
                _ = try operation(&copy)
                return false
            } catch {
                return copy == machine
            }
        }
        let pending = try Fixtures.machine()
        #expect(refused(pending) { m in try m.pause(now: 1, by: "a") })
        #expect(refused(pending) { m in try m.resume(now: 1, by: "a") })
        #expect(refused(pending) { m in try m.promote(now: 1, by: "a") })

        let running = try started()
        #expect(refused(running) { m in try m.start(now: 1) })
        #expect(refused(running) { m in try m.resume(now: 1, by: "a") })

        var paused = running
        _ = try paused.pause(now: 1001, by: "a")
        #expect(refused(paused) { m in try m.pause(now: 1, by: "a") })
        #expect(refused(paused) { m in try m.promote(now: 1, by: "a") })
        #expect(throws: RolloutError.invalidTransition(
            operation: "promote", state: paused.state, reason: "it is paused: resume it first")) {
            var copy = paused
            _ = try copy.promote(now: 1002, by: "a")
        }

        var completed = running
        for _ in 0..<4 { _ = try completed.promote(now: 1001, by: "a") }
        #expect(completed.state == .completed)
        for operation: (inout RolloutMachine) throws -> [RolloutAction] in [
            { m in try m.start(now: 1) },
            { m in try m.pause(now: 1, by: "a") },
            { m in try m.resume(now: 1, by: "a") },
            { m in try m.abort(now: 1, by: "a") },
            { m in try m.promote(now: 1, by: "a") },
        ] {
            #expect(refused(completed, operation))
        }
        var copy = completed
        do {
            _ = try copy.resume(now: 2000, by: "ana")
            Issue.record("resuming a completed rollout must throw")
        } catch {
            #expect(error.description == "cannot resume a rollout that is completed: it has ended")
        }

        var rolledBack = running
        _ = try rolledBack.abort(now: 1001, by: "a")
        #expect(refused(rolledBack) { m in try m.abort(now: 1, by: "a") })
        #expect(refused(rolledBack) { m in try m.resume(now: 1, by: "a") })
    }

    // MARK: Freeze

    @Test("a freeze holds a passed stage; unfreezing advances it")
    func freezeHoldsAdvance() throws {
        var machine = try started()
        #expect(machine.setFrozen(true, now: 1001).events == [.frozen])
        #expect(machine.setFrozen(true, now: 1002).isEmpty)  // idempotent, not logged twice

        let passed = machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1010)
        #expect(passed.events == [.passed])
        #expect(passed.effects.isEmpty)
        #expect(machine.state == .running(stage: 0))
        #expect(machine.progress[0] == .passed)
        #expect(machine.stagesWithNewVersion == [0])
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1011).isEmpty)
        #expect(throws: RolloutError.frozen(operation: "promote")) {
            var copy = machine
            _ = try copy.promote(now: 1012, by: "ana")
        }

        let unfrozen = machine.setFrozen(false, now: 1020)
        #expect(unfrozen.events == [.unfrozen])
        #expect(unfrozen.effects == [.apply(stage: 1, version: 4)])
        #expect(machine.state == .running(stage: 1))
        #expect(machine.bakeStartedAt == 1020)
    }

    @Test("a freeze never stops an automatic rollback")
    func freezeDoesNotStopRollback() throws {
        let broken = Fixtures.sample(requests: 100, signatures: [Fixtures.executeSignature: 1])

        // Frozen while baking.
        var baking = try started()
        _ = baking.setFrozen(true, now: 1001)
        #expect(baking.observe(stage: broken, baseline: Fixtures.healthy, now: 1002).effects
            == [.rollback(toVersion: 3, stages: [0])])
        #expect(baking.decisions.last?.message.contains("a freeze never stops an automatic rollback") == true)

        // Frozen after the stage passed and while it is held.
        var held = try started()
        _ = held.setFrozen(true, now: 1001)
        _ = held.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1010)
        #expect(held.observe(stage: broken, baseline: Fixtures.healthy, now: 1015).effects
            == [.rollback(toVersion: 3, stages: [0])])
        #expect(held.progress == [.passed, .skipped, .skipped, .skipped])
        guard case .rolledBack = held.state else {
            Issue.record("expected a rollback, got \(held.state)")
            return
        }
    }

    @Test("a freeze blocks starting; pausing and resuming are not advancing and stay allowed")
    func freezeAndCommands() throws {
        var machine = try Fixtures.machine(frozen: true)
        #expect(throws: RolloutError.frozen(operation: "start")) {
            var copy = machine
            _ = try copy.start(now: 1000)
        }
        _ = machine.setFrozen(false, now: 1000)
        _ = try machine.start(now: 1000)
        _ = machine.setFrozen(true, now: 1001)
        _ = try machine.pause(now: 1002, by: "ana")
        _ = machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1010)  // paused: ignored
        _ = try machine.resume(now: 1011, by: "ana")
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1012).effects.isEmpty)
        #expect(machine.progress[0] == .passed)
        // Paused while held, unfrozen while paused: the stage advances on resume.
        _ = try machine.pause(now: 1013, by: "ana")
        #expect(machine.setFrozen(false, now: 1014).effects.isEmpty)
        #expect(try machine.resume(now: 1015, by: "ana").effects == [.apply(stage: 1, version: 4)])
    }

    @Test("a freeze of a finished rollout is not logged")
    func freezeFinished() throws {
        var machine = try started()
        _ = try machine.abort(now: 1001, by: "ana")
        let count = machine.decisions.count
        #expect(machine.setFrozen(true, now: 1002).isEmpty)
        #expect(machine.decisions.count == count)
    }

    // MARK: Restarts and storage

    @Test("after a supervisor restart the running stage bakes again from now")
    func restoredRestartsBake() throws {
        var machine = try started()
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1009).isEmpty)
        let actions = machine.restored(now: 1500)
        #expect(actions.events == [.restored])
        #expect(actions.effects == [.resetWindow(stage: 0)])
        #expect(machine.bakeStartedAt == 1500)
        // With the old clock this would pass at once, on 1 s of measured traffic.
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1501).isEmpty)
        #expect(machine.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 1510).events == [.passed])
    }

    @Test("restored does nothing for a pending or finished rollout")
    func restoredIdle() throws {
        var pending = try Fixtures.machine()
        #expect(pending.restored(now: 1).isEmpty)
        var done = try started()
        _ = try done.abort(now: 1001, by: "ana")
        #expect(done.restored(now: 1002).isEmpty)
    }

    @Test("a rollout stored mid-way decodes equal and carries on after restored")
    func codableRoundTrip() throws {
        var machine = try started()
        _ = machine.setFrozen(true, now: 1001)
        _ = machine.setFrozen(false, now: 1002)
        _ = machine.observe(
            stage: Fixtures.healthy, baseline: Fixtures.sample(requests: 100, signatures: ["old": 1]), now: 1010.25)
        _ = machine.observe(stage: Fixtures.sample(requests: 20), baseline: Fixtures.healthy, now: 1013)
        #expect(machine.state == .running(stage: 1))

        let data = try JSONEncoder().encode(machine)
        var decoded = try JSONDecoder().decode(RolloutMachine.self, from: data)
        #expect(decoded == machine)
        #expect(decoded.status == machine.status)
        #expect(decoded.version(forPool: "free", slot: 1) == 4)
        #expect(decoded.knownSignatures.contains("old"))

        #expect(decoded.restored(now: 2000).effects == [.resetWindow(stage: 1)])
        #expect(decoded.observe(stage: Fixtures.healthy, baseline: Fixtures.healthy, now: 2005).isEmpty)
        #expect(try passCurrentStage(&decoded).effects == [.apply(stage: 2, version: 4)])
        #expect(try passCurrentStage(&decoded).effects == [.apply(stage: 3, version: 4)])
        #expect(try passCurrentStage(&decoded).effects == [.completed])
        #expect(decoded.decisions.map(\.event) == [
            .started, .frozen, .unfrozen, .passed, .restored, .passed, .passed, .passed, .completed,
        ])
    }

    @Test("a stored rollout whose parts do not fit is refused, not trusted")
    func corruptStoredRollout() throws {
        let machine = try started()
        let data = try JSONEncoder().encode(machine)
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])

        var badStage = object
        badStage["state"] = ["running": ["stage": 9]]
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(
                RolloutMachine.self, from: try JSONSerialization.data(withJSONObject: badStage))
        }
        object["progress"] = ["baking"]
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(RolloutMachine.self, from: try JSONSerialization.data(withJSONObject: object))
        }
    }

    // MARK: Status

    @Test("status shows the stage, each stage's state, who has the new version, and the log")
    func status() throws {
        var machine = try started()
        _ = try passCurrentStage(&machine)
        _ = machine.observe(stage: Fixtures.sample(requests: 7), baseline: nil, now: 1011)
        let status = machine.status
        #expect(status.kind == .rules)
        #expect(status.targetVersion == 4)
        #expect(status.previousVersion == 3)
        #expect(status.currentStage == 1)
        #expect(status.stages.map(\.progress) == [.passed, .baking, .pending, .pending])
        #expect(status.stages.map(\.hasNewVersion) == [true, true, false, false])
        #expect(status.stages.map(\.name) == ["free canary", "free", "pro", "enterprise"])
        #expect(status.stagesWithNewVersion == [0, 1])
        #expect(status.lastVerdict?.outcome == .keepBaking)
        #expect(status.lastVerdict?.requests == 7)
        #expect(status.decisions.map(\.event) == [.started, .passed])
        #expect(status.decisions[1].description.hasPrefix("t=1010.0 passed [free canary] by gate: free canary passed"))
    }

    @Test("versions belong to slots: what each slot should run")
    func versionsBySlot() throws {
        let machine = try started()
        #expect(machine.version(forPool: "free", slot: 0) == 4)
        #expect(machine.version(forPool: "free", slot: 1) == 3)
        #expect(machine.version(forPool: "pro", slot: 1) == 3)
        #expect(machine.version(forPool: "free", slot: 7) == nil)
        #expect(machine.version(forPool: "staging", slot: 0) == nil)
    }

    @Test("a clock that is not a number never reaches the log")
    func nonFiniteClock() throws {
        var machine = try started()
        _ = try machine.pause(now: .nan, by: "ana")
        #expect(machine.decisions.allSatisfy { $0.time.isFinite })
        #expect(machine.decisions.last?.time == 1000)
    }
}
