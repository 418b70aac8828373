import BulkheadCore
import Foundation
import Rollout
import Testing

/// The arithmetic that gives a stage only what happened in it: counts tagged with
/// the artifact versions that made them, and crashes a script was blamed for.
@Suite("Version-tagged samples")
struct VersionedSampleTests {
    static let badSignature = "runtime.lua: boom"

    /// A worker's counts under one pair of versions.
    static func counts(runtime: Int, rules: Int = 0, requests: Int, platformErrors: Int = 0, scriptErrors: Int = 0) -> VersionCounts {
        var counts = VersionCounts(runtime: runtime, rules: rules)
        counts.requests = requests
        counts.platformErrors = platformErrors
        counts.scriptErrors = scriptErrors
        if platformErrors > 0 { counts.platformSignatures = [badSignature: platformErrors] }
        for _ in 0..<requests { counts.latency.record(nanoseconds: 2_000_000) }
        return counts
    }

    /// Stats whose totals are the sum of `table`, running `runtime`.
    static func stats(runtime: Int, _ table: [VersionCounts]) -> WorkerStats {
        var stats = WorkerStats()
        stats.versions.runtime = runtime
        for entry in table {
            stats.requests += entry.requests
            stats.platformErrors += entry.platformErrors
            stats.errors["script-error", default: 0] += entry.scriptErrors
            for (signature, count) in entry.platformSignatures { stats.platformSignatures[signature, default: 0] += count }
            stats.latency.add(entry.latency)
        }
        stats.byVersion = table
        return stats
    }

    @Test("errors of a rolled-back runtime reported after the next rollout began are not charged to its stage")
    func lateCountsOfARolledBackVersionStayWithIt() {
        // The canary ran runtime 1 (bad), was rolled back to 0, and runtime 2's
        // window began on a heartbeat that had not yet seen 77 of runtime 1's errors.
        let base = Self.stats(runtime: 1, [
            Self.counts(runtime: 0, requests: 500), Self.counts(runtime: 1, requests: 40, platformErrors: 40),
        ])
        let current = Self.stats(runtime: 2, [
            Self.counts(runtime: 0, requests: 530), Self.counts(runtime: 1, requests: 117, platformErrors: 117),
            Self.counts(runtime: 2, requests: 60),
        ])
        let stage = StageSample.window(from: base, to: current, kind: .runtime, version: 2)
        #expect(stage.requests == 60)
        #expect(stage.platformErrors == 0)
        #expect(stage.signatures.isEmpty)
        #expect(stage.p99 != nil)
        let baseline = StageSample.window(from: base, to: current, kind: .runtime, version: 0)
        #expect(baseline.requests == 30 && baseline.platformErrors == 0)
        let rolledBack = StageSample.window(from: base, to: current, kind: .runtime, version: 1)
        #expect(rolledBack.platformErrors == 77 && rolledBack.signatures == [Self.badSignature: 77])

        // Judged on its own counts the good runtime passes; on the worker's whole
        // difference (what the gate read before) it fails on the 77 late errors.
        let gate = Fixtures.gate(bake: 1, minRequests: 20)
        #expect(HealthGate.evaluate(gate: gate, stage: stage, baseline: baseline, elapsedSeconds: 2).outcome == .pass)
        var whole = base
        whole.byVersion = nil
        var wholeNow = current
        wholeNow.byVersion = nil
        let unsplit = StageSample.window(from: whole, to: wholeNow, kind: .runtime, version: 2)
        #expect(unsplit.platformErrors == 77)
        #expect(HealthGate.evaluate(gate: gate, stage: unsplit, baseline: baseline, elapsedSeconds: 2).outcome == .fail)
    }

    @Test("a rollout of rules counts every runtime its stage ran with, and only its own rules version")
    func rulesSamplesSumOverRuntimes() {
        let current = Self.stats(runtime: 3, [
            Self.counts(runtime: 2, rules: 5, requests: 10, scriptErrors: 1),
            Self.counts(runtime: 3, rules: 5, requests: 20, scriptErrors: 2),
            Self.counts(runtime: 3, rules: 4, requests: 70),
        ])
        let sample = StageSample.window(from: nil, to: current, kind: .rules, version: 5)
        #expect(sample.requests == 30)
        #expect(sample.scriptErrors == 3)
        #expect(sample.latency?.total == 30)
    }

    @Test("a worker that started inside the window, or restarted, counts from zero")
    func aNewProcessCountsFromZero() {
        let current = Self.stats(runtime: 2, [Self.counts(runtime: 2, requests: 15)])
        #expect(StageSample.window(from: nil, to: current, kind: .runtime, version: 2).requests == 15)
        let olderProcess = Self.stats(runtime: 2, [Self.counts(runtime: 2, requests: 900)])
        #expect(StageSample.window(from: olderProcess, to: current, kind: .runtime, version: 2).requests == 15)
    }

    @Test("a binary rollout counts a worker whole when it runs the binary, and not at all otherwise")
    func binaryWindowsAreWholeWorkers() {
        var current = Self.stats(runtime: 0, [Self.counts(runtime: 0, requests: 50, platformErrors: 2)])
        current.versions.binary = 3
        let stage = StageSample.window(from: nil, to: current, kind: .binary, version: 3)
        #expect(stage.requests == 50 && stage.platformErrors == 2)
        #expect(StageSample.window(from: nil, to: current, kind: .binary, version: 2).requests == 0)
    }

    @Test("a policy rollout counts a worker whole when it runs the policy, script errors included")
    func policyWindowsAreWholeWorkers() {
        var base = Self.stats(runtime: 1, [Self.counts(runtime: 1, requests: 10)])
        base.versions.policy = 4
        var current = Self.stats(runtime: 1, [Self.counts(runtime: 1, requests: 70, scriptErrors: 25)])
        current.versions.policy = 4
        let stage = StageSample.window(from: base, to: current, kind: .policy, version: 4)
        #expect(stage.requests == 60 && stage.scriptErrors == 25)
        #expect(StageSample.window(from: base, to: current, kind: .policy, version: 0).requests == 0)
    }

    @Test("the worker's ledger splits its counters at each artifact change, and charges a refused version its failure")
    func ledgerSplitsAtChanges() {
        var stats = WorkerStats()
        var ledger = VersionLedger()
        stats.requests = 100
        stats.latency.record(nanoseconds: 1_000_000)
        ledger.close(stats)  // runtime 1 arrives
        stats.versions.runtime = 1
        stats.requests += 20
        stats.countPlatformError(Self.badSignature)
        stats.countPlatformError(Self.badSignature)
        // Runtime 2 fails to load: the failure is runtime 2's, the worker stays on 1.
        ledger.close(stats)
        stats.countPlatformError("artifact runtime: syntax")
        ledger.close(stats, chargingTo: (runtime: 2, rules: 0))
        stats.requests += 5
        let table = ledger.table(stats)
        #expect(table.map { [$0.runtime, $0.rules, $0.requests, $0.platformErrors] } == [[0, 0, 100, 0], [1, 0, 25, 2], [2, 0, 0, 1]])
        #expect(table.first { $0.runtime == 1 }?.platformSignatures == [Self.badSignature: 2])
        #expect(table.first { $0.runtime == 2 }?.platformSignatures == ["artifact runtime: syntax": 1])
        #expect(table[0].latency.total == 1)
        // A refused version has no request but a new signature: its stage fails at once.
        var withTable = stats
        withTable.byVersion = table
        let refused = StageSample.window(from: nil, to: withTable, kind: .runtime, version: 2)
        let verdict = HealthGate.evaluate(gate: Fixtures.gate(), stage: refused, baseline: nil, elapsedSeconds: 0.2)
        #expect(verdict.outcome == .fail && verdict.failedChecks == [.newSignatures])
    }

    @Test("the ledger keeps a bounded number of version pairs, dropping the oldest")
    func ledgerIsBounded() {
        var stats = WorkerStats()
        var ledger = VersionLedger()
        for version in 1...(VersionLedger.maxEntries + 4) {
            stats.requests += 1
            ledger.close(stats)
            stats.versions.runtime = version
        }
        let table = ledger.table(stats)
        #expect(table.count == VersionLedger.maxEntries)
        #expect(table.last?.runtime == VersionLedger.maxEntries + 4)
    }

    @Test("an older worker's heartbeats are split between heartbeats, leaving out an interval in which its versions changed")
    func olderWorkersAreAttributedBetweenHeartbeats() {
        func heartbeat(runtime: Int, requests: Int, errors: Int) -> WorkerStats {
            var stats = WorkerStats()
            stats.versions.runtime = runtime
            stats.requests = requests
            stats.platformErrors = errors
            return stats
        }
        var table = VersionCounts.attributed([], previous: nil, current: heartbeat(runtime: 1, requests: 10, errors: 10))
        #expect(table.isEmpty, "the first heartbeat only starts the count")
        table = VersionCounts.attributed(table, previous: heartbeat(runtime: 1, requests: 10, errors: 10),
                                         current: heartbeat(runtime: 1, requests: 30, errors: 30))
        // The rollback lands between these two: 77 late errors, version unknown.
        table = VersionCounts.attributed(table, previous: heartbeat(runtime: 1, requests: 30, errors: 30),
                                         current: heartbeat(runtime: 0, requests: 120, errors: 107))
        table = VersionCounts.attributed(table, previous: heartbeat(runtime: 0, requests: 120, errors: 107),
                                         current: heartbeat(runtime: 0, requests: 160, errors: 107))
        #expect(table.map { [$0.runtime, $0.requests, $0.platformErrors] } == [[1, 20, 20], [0, 40, 0]])
    }

    @Test("crashes a script was blamed for are left out and listed; any other crash still fails the stage")
    func crashesBlamedOnScriptsAreLeftOut() {
        let gate = Fixtures.gate(bake: 1, minRequests: 20, maxCrashes: 0)
        var stage = Fixtures.sample(requests: 100)
        stage.crashesLeftOut = ["c-free/poison": 3]
        let verdict = HealthGate.evaluate(gate: gate, stage: stage, baseline: Fixtures.sample(requests: 100), elapsedSeconds: 2)
        #expect(verdict.outcome == .pass)
        #expect(verdict.crashes == 0)
        #expect(verdict.crashesLeftOut == ["c-free/poison": 3])
        #expect(verdict.reasons.contains("3 crash(es) left out, already blamed on a customer script: c-free/poison ×3"))

        stage.crashes = 1
        let failed = HealthGate.evaluate(gate: gate, stage: stage, baseline: Fixtures.sample(requests: 100), elapsedSeconds: 0.1)
        #expect(failed.outcome == .fail && failed.failedChecks == [.crashes])
        #expect(failed.reasons.first == "1 worker crash(es), max 0")
        #expect(failed.crashesLeftOut == ["c-free/poison": 3])
    }

    @Test("the machine carries crashes left out across a restarted window, and records them in the decision")
    func machineCarriesLeftOutCrashes() throws {
        let gate = Fixtures.gate(bake: 1, minRequests: 20)
        var machine = try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1,
                                         stages: Fixtures.stages(gate: gate), now: 0)
        _ = try machine.start(now: 0)
        var sample = Fixtures.sample(requests: 5)
        sample.crashesLeftOut = ["c-free/poison": 1]
        #expect(machine.observe(stage: sample, baseline: Fixtures.sample(requests: 5), now: 0.5).isEmpty)
        _ = machine.restored(now: 0.6)
        sample = Fixtures.sample(requests: 50)
        sample.crashesLeftOut = ["c-free/poison": 2]
        _ = machine.observe(stage: sample, baseline: Fixtures.sample(requests: 50), now: 2)
        let passed = try #require(machine.decisions.last { $0.event == .passed })
        #expect(passed.verdict?.crashesLeftOut == ["c-free/poison": 3])
        #expect(passed.verdict?.crashes == 0)
        // Stored and read back, it keeps them.
        let decoded = try JSONDecoder().decode(RolloutMachine.self, from: JSONEncoder().encode(machine))
        #expect(decoded == machine)
    }
}
