import BulkheadCore
import Foundation
import Rollout
import Testing

@Suite("Script deployment machine")
struct DeploymentMachineTests {
    let gate = Fixtures.gate(bake: 5, maxBake: 30, minRequests: 20)

    private func machine(steps: [Double] = [1, 10, 50, 100]) throws -> DeploymentMachine {
        var machine = try DeploymentMachine(id: 0, version: 3, fromVersion: 2, steps: steps, gate: gate, by: "customer:acme", now: 100)
        machine.id = 7
        return machine
    }

    private func report(
        _ percent: Double, candidate: StageSample, baseline: StageSample, at: Double = 110, from: Double = 100,
        known: [String] = []
    ) -> DeploymentReport {
        DeploymentReport(
            deployment: 7, percent: percent, acknowledgedAt: from, measuredAt: at, candidate: candidate, baseline: baseline,
            knownSignatures: known)
    }

    @Test("a healthy candidate walks every step and is promoted at the end")
    func walksEveryStep() throws {
        var machine = try machine()
        #expect(machine.percent == 1)
        var actions: [[DeploymentMachine.Action]] = []
        for (index, percent) in [1.0, 10, 50, 100].enumerated() {
            let baseline = percent == 100 ? Fixtures.sample(requests: 0, p99: nil) : Fixtures.sample(requests: 500, scriptErrors: 2)
            actions.append(machine.observe(
                report(percent, candidate: Fixtures.sample(requests: 60, scriptErrors: 0), baseline: baseline,
                       at: 110 + Double(index) * 10, from: 100 + Double(index) * 10), now: 111 + Double(index) * 10))
        }
        #expect(actions == [[.setShare(10)], [.setShare(50)], [.setShare(100)], [.promote]])
        #expect(machine.state == .completed)
        #expect(machine.windows.map(\.percent) == [1, 10, 50, 100])
        #expect(machine.decisions.map(\.event) == [.started, .passed, .passed, .passed, .passed, .completed])
        // The 100% step, with no old-version traffic left, was compared with the last step's.
        #expect(machine.decisions[4].verdict?.baselineRequests == 500)
    }

    @Test("a signature the old version never had rolls back at once, before the bake and the minimum traffic")
    func newSignatureRollsBackAtOnce() throws {
        var machine = try machine()
        let candidate = Fixtures.sample(requests: 3, scriptErrors: 1, signatures: ["acme/api.lua: attempt to index a nil value (field 'user')": 1])
        let actions = machine.observe(
            report(1, candidate: candidate, baseline: Fixtures.sample(requests: 300, scriptErrors: 1, signatures: ["acme/api.lua: timeout": 1]),
                   at: 100.5), now: 101)
        #expect(actions == [.revert])
        #expect(machine.state == .rolledBack)
        #expect(machine.percent == 0)
        let decision = try #require(machine.decisions.last)
        #expect(decision.event == .failed)
        #expect(decision.verdict?.failedChecks == [.newSignatures])
        #expect(decision.message.contains("field 'user'"))
    }

    @Test("the old version's own error is not new, at any time under the deployment")
    func knownSignaturesAreNotNew() throws {
        var machine = try machine()
        let signature = "acme/api.lua: flaky backend"
        let candidate = Fixtures.sample(requests: 5, scriptErrors: 1, signatures: [signature: 1])
        // Not in this window's baseline, but seen on the old version under the deployment.
        let actions = machine.observe(
            report(1, candidate: candidate, baseline: Fixtures.sample(requests: 300), at: 101, known: [signature]), now: 101)
        #expect(actions.isEmpty)
        #expect(machine.state == .running)
    }

    @Test("a higher rate of the old version's own error fails on the rate test once the counts allow it")
    func rateIncreaseFails() throws {
        var machine = try machine()
        let signature = "acme/api.lua: flaky backend"
        let baseline = Fixtures.sample(requests: 4000, scriptErrors: 20, signatures: [signature: 20])
        // Too few requests yet: keeps baking.
        #expect(machine.observe(report(1, candidate: Fixtures.sample(requests: 10, scriptErrors: 1, signatures: [signature: 1]),
                                       baseline: baseline), now: 110).isEmpty)
        let actions = machine.observe(
            report(1, candidate: Fixtures.sample(requests: 80, scriptErrors: 4, signatures: [signature: 4]), baseline: baseline, at: 112),
            now: 112)
        #expect(actions == [.revert])
        let verdict = try #require(machine.decisions.last?.verdict)
        #expect(verdict.failedChecks == [.scriptErrorRateIncrease])
        #expect(verdict.scriptErrors.test?.pValue ?? 1 < HealthGate.alpha)
    }

    @Test("a step short of traffic past its max bake pauses; resumed, it gets another max bake")
    func inconclusivePausesAndResumes() throws {
        var machine = try machine()
        let thin = report(1, candidate: Fixtures.sample(requests: 3), baseline: Fixtures.sample(requests: 200), at: 131)
        #expect(machine.observe(thin, now: 131) == [.persist])
        #expect(machine.state == .paused)
        #expect(machine.observe(thin, now: 132).isEmpty)
        #expect(try machine.resume(by: "admin", now: 140) == [.persist])
        #expect(machine.observe(report(1, candidate: Fixtures.sample(requests: 3), baseline: Fixtures.sample(requests: 200), at: 150), now: 150)
            .isEmpty)
        #expect(machine.state == .running)
    }

    @Test("operators pause, abort and promote; a finished deployment refuses them")
    func operators() throws {
        var paused = try machine()
        #expect(try paused.pause(by: "admin", now: 101) == [.persist])
        #expect(throws: DeploymentError.self) { try paused.pause(by: "admin", now: 102) }
        // A paused deployment ignores reports.
        #expect(paused.observe(report(1, candidate: Fixtures.sample(requests: 60), baseline: Fixtures.sample(requests: 600)), now: 111).isEmpty)
        #expect(try paused.abort(by: "admin", now: 103) == [.revert])
        #expect(paused.state == .aborted)
        #expect(throws: DeploymentError.self) { try paused.promote(by: "admin", now: 104) }

        var promoted = try machine()
        #expect(try promoted.promote(by: "admin", now: 101) == [.promote])
        #expect(promoted.state == .completed)
        #expect(promoted.percent == 100)
    }

    @Test("reports on another share or deployment change nothing")
    func staleReportsAreIgnored() throws {
        var machine = try machine()
        #expect(machine.observe(report(10, candidate: Fixtures.sample(requests: 60), baseline: Fixtures.sample(requests: 600)), now: 111).isEmpty)
        var other = report(1, candidate: Fixtures.sample(requests: 60), baseline: Fixtures.sample(requests: 600))
        other.deployment = 8
        #expect(machine.observe(other, now: 111).isEmpty)
        #expect(machine.step == 0)
    }

    @Test("the machine round-trips through its stored JSON where it stood")
    func survivesEncoding() throws {
        var machine = try machine()
        _ = machine.observe(report(1, candidate: Fixtures.sample(requests: 60), baseline: Fixtures.sample(requests: 600)), now: 111)
        let decoded = try JSONDecoder().decode(DeploymentMachine.self, from: try JSONEncoder().encode(machine))
        #expect(decoded == machine)
        #expect(decoded.step == 1)
    }

    @Test("steps must grow to 100")
    func stepsAreChecked() {
        for steps: [Double] in [[], [10, 5, 100], [1, 10, 50], [0, 100], [1, 101], [50, 50, 100]] {
            #expect(throws: DeploymentError.self) {
                _ = try DeploymentMachine(id: 1, version: 2, fromVersion: 1, steps: steps, gate: gate, by: "admin", now: 0)
            }
        }
    }

    @Test("a deployment's own thresholds only tighten its cohort's gate")
    func tighteningNeverLoosens() {
        let cohort = Fixtures.gate(bake: 10, maxBake: 60, minRequests: 50, maxIncrease: 0.005, maxNewSignatures: 1)
        let tightened = GateTightening(bakeSeconds: 20, minRequests: 10, maxErrorRateIncrease: 0.01, maxNewSignatures: 0).applied(to: cohort)
        #expect(tightened.bakeSeconds == 20)
        #expect(tightened.minRequests == 50)
        #expect(tightened.maxErrorRateIncrease == 0.005)
        #expect(tightened.maxNewSignatures == 0)
    }
}
