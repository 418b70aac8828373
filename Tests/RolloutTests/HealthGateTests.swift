import BulkheadCore
import Rollout
import Testing

@Suite("Health gate")
struct HealthGateTests {
    let gate = Fixtures.gate(bake: 10, maxBake: 60, minRequests: 50)

    private func evaluate(
        _ stage: StageSample, _ baseline: StageSample?, at elapsed: Double = 15,
        gate: CohortConfiguration.Gate? = nil, known: Set<String> = []
    ) -> GateVerdict {
        HealthGate.evaluate(
            gate: gate ?? self.gate, stage: stage, baseline: baseline, elapsedSeconds: elapsed, knownSignatures: known)
    }

    // MARK: Immediate failures

    @Test("a signature absent from the baseline fails at once, before the bake and on little traffic")
    func newSignatureFailsAtOnce() {
        let stage = Fixtures.sample(requests: 3, platformErrors: 2, signatures: [Fixtures.executeSignature: 2])
        let verdict = evaluate(stage, Fixtures.sample(requests: 3), at: 0.2)
        #expect(verdict.outcome == .fail)
        #expect(verdict.failedChecks == [.newSignatures])
        #expect(verdict.newSignatures == [Fixtures.executeSignature: 2])
        #expect(verdict.reasons.first?.contains("field 'execute'") == true)
    }

    @Test("a signature the baseline has, or one known before the rollout, is not new")
    func knownSignaturesAreNotNew() {
        let old = "rules.lua: bad argument #1 to 'match'"
        let stage = Fixtures.sample(requests: 100, signatures: [old: 1, "app.lua: boom": 1])
        let baseline = Fixtures.sample(requests: 100, signatures: [old: 3])
        #expect(evaluate(stage, baseline, known: ["app.lua: boom"]).outcome == .pass)
        let verdict = evaluate(stage, baseline)
        #expect(verdict.outcome == .fail)
        #expect(verdict.newSignatures == ["app.lua: boom": 1])
        // A signature with a zero count was not seen.
        #expect(evaluate(Fixtures.sample(requests: 100, signatures: ["x": 0]), baseline).outcome == .pass)
    }

    @Test("max_new_signatures tolerates that many")
    func newSignatureAllowance() {
        let stage = Fixtures.sample(requests: 100, signatures: ["a": 1, "b": 1])
        #expect(evaluate(stage, Fixtures.healthy, gate: Fixtures.gate(maxNewSignatures: 2)).outcome == .pass)
        #expect(evaluate(stage, Fixtures.healthy, gate: Fixtures.gate(maxNewSignatures: 1)).outcome == .fail)
    }

    @Test("crashes beyond max_crashes fail at once; up to it they do not")
    func crashes() {
        let lenient = Fixtures.gate(maxCrashes: 1)
        #expect(evaluate(Fixtures.sample(requests: 0, crashes: 1), nil, at: 1, gate: lenient).outcome == .keepBaking)
        let verdict = evaluate(Fixtures.sample(requests: 0, crashes: 2), nil, at: 1, gate: lenient)
        #expect(verdict.outcome == .fail)
        #expect(verdict.failedChecks == [.crashes])
        #expect(verdict.crashes == 2)
        #expect(evaluate(Fixtures.sample(requests: 5, crashes: 1), nil, at: 1).outcome == .fail)
    }

    // MARK: Missing data

    @Test("below min_requests: keep baking, then inconclusive at max_bake — never a pass")
    func tooLittleTraffic() {
        let stage = Fixtures.sample(requests: 49)
        #expect(evaluate(stage, Fixtures.healthy, at: 59.9).outcome == .keepBaking)
        let verdict = evaluate(stage, Fixtures.healthy, at: 60)
        #expect(verdict.outcome == .inconclusive)
        #expect(verdict.reasons.first?.contains("49 of 50 requests") == true)
        #expect(evaluate(Fixtures.sample(requests: 50), Fixtures.healthy, at: 60).outcome == .pass)
    }

    @Test("min_requests = 0 still needs one request")
    func zeroMinimumStillNeedsTraffic() {
        let none = Fixtures.gate(minRequests: 0)
        #expect(evaluate(Fixtures.sample(requests: 0), nil, at: 30, gate: none).outcome == .keepBaking)
        #expect(evaluate(Fixtures.sample(requests: 0), nil, at: 60, gate: none).outcome == .inconclusive)
        #expect(evaluate(Fixtures.sample(requests: 1), nil, at: 30, gate: none).outcome == .pass)
    }

    @Test("no latency measured is missing data, not a fast stage")
    func missingLatency() {
        let stage = Fixtures.sample(requests: 100, p99: nil)
        let verdict = evaluate(stage, Fixtures.healthy, at: 20)
        #expect(verdict.outcome == .keepBaking)
        #expect(verdict.reasons.first?.contains("no latency") == true)
        #expect(evaluate(stage, Fixtures.healthy, at: 60).outcome == .inconclusive)
    }

    @Test("before bake_seconds a stage keeps baking even when healthy")
    func bakeTime() {
        #expect(evaluate(Fixtures.healthy, Fixtures.healthy, at: 9.99).outcome == .keepBaking)
        #expect(evaluate(Fixtures.healthy, Fixtures.healthy, at: 10).outcome == .pass)
        // A clock that went backwards does not count as bake time.
        #expect(evaluate(Fixtures.healthy, Fixtures.healthy, at: -100).elapsedSeconds == 0)
    }

    // MARK: Thresholds after the bake

    @Test("platform error rate above max_error_rate fails")
    func absoluteErrorRate() {
        let verdict = evaluate(Fixtures.sample(requests: 1000, platformErrors: 11), nil)
        #expect(verdict.outcome == .fail)
        #expect(verdict.failedChecks == [.errorRate])
        #expect(verdict.platformErrors.stageRate == 0.011)
        #expect(evaluate(Fixtures.sample(requests: 1000, platformErrors: 10), nil).outcome == .pass)
    }

    @Test("30/1000 vs 1/1000: an increase beyond the limit and significant fails, with its numbers")
    func significantIncrease() throws {
        let lenientRate = Fixtures.gate(maxErrorRate: 0.5)
        let verdict = evaluate(
            Fixtures.sample(requests: 1000, platformErrors: 30), Fixtures.sample(requests: 1000, platformErrors: 1),
            gate: lenientRate)
        #expect(verdict.outcome == .fail)
        #expect(verdict.failedChecks == [.errorRateIncrease])
        let test = try #require(verdict.platformErrors.test)
        #expect(test.method == .pooledZ)
        #expect(abs(try #require(verdict.platformErrors.increase) - 0.029) < 1e-12)
        #expect(verdict.platformErrors.significant)
        #expect(verdict.baselineUsed)
        #expect(verdict.reasons.first?.contains("z = 5.25") == true)
        #expect(verdict.reasons.first?.contains("p = 7.6e-8") == true)
    }

    @Test("2/1000 vs 1/1000: an increase beyond a tiny limit but not significant passes")
    func insignificantIncrease() throws {
        let tinyLimit = Fixtures.gate(maxIncrease: 0.0005)
        let verdict = evaluate(
            Fixtures.sample(requests: 1000, platformErrors: 2), Fixtures.sample(requests: 1000, platformErrors: 1),
            gate: tinyLimit)
        #expect(verdict.outcome == .pass)
        #expect(try #require(verdict.platformErrors.increase) > 0.0005)
        #expect(!verdict.platformErrors.significant)
        #expect(verdict.platformErrors.test?.method == .fisherExact)
        // Exactly 1/2 by symmetry; log-gamma of ~2000 carries ~1e-12 of rounding.
        #expect(abs((verdict.platformErrors.test?.pValue ?? 0) - 0.5) < 1e-9)
    }

    @Test("a significant increase within max_error_rate_increase passes")
    func significantButSmallIncrease() {
        // 600/100000 vs 500/100000: p = 0.0012, but +0.1 pt is under the 0.5 pt limit.
        let verdict = evaluate(
            Fixtures.sample(requests: 100_000, platformErrors: 600),
            Fixtures.sample(requests: 100_000, platformErrors: 500))
        #expect(verdict.platformErrors.significant)
        #expect(verdict.outcome == .pass)
    }

    @Test("script errors: an increase over the baseline fails; a high but equal rate does not")
    func scriptErrors() {
        let broken = evaluate(
            Fixtures.sample(requests: 1000, scriptErrors: 60), Fixtures.sample(requests: 1000, scriptErrors: 10))
        #expect(broken.outcome == .fail)
        #expect(broken.failedChecks == [.scriptErrorRateIncrease])
        // 30% script errors is a customer's buggy script, on both versions alike:
        // max_error_rate is not applied to script errors.
        let buggyCustomer = evaluate(
            Fixtures.sample(requests: 1000, scriptErrors: 300), Fixtures.sample(requests: 1000, scriptErrors: 300))
        #expect(buggyCustomer.outcome == .pass)
        #expect(buggyCustomer.scriptErrors.maxRate == nil)
    }

    @Test("p99 above max_p99_ms fails after the bake")
    func p99() {
        let slow = Fixtures.sample(requests: 100, p99: 251)
        #expect(evaluate(slow, Fixtures.healthy, at: 5).outcome == .keepBaking)
        let verdict = evaluate(slow, Fixtures.healthy, at: 10)
        #expect(verdict.outcome == .fail)
        #expect(verdict.failedChecks == [.p99])
        #expect(verdict.p99Milliseconds == 251)
        #expect(evaluate(Fixtures.sample(requests: 100, p99: 250), Fixtures.healthy).outcome == .pass)
    }

    @Test("p99 from a histogram")
    func p99FromHistogram() {
        var histogram = LatencyHistogram()
        for _ in 0..<98 { histogram.record(nanoseconds: 5_000_000) }
        for _ in 0..<2 { histogram.record(nanoseconds: 900_000_000) }
        let stage = StageSample(requests: 100, latency: histogram)
        let verdict = evaluate(stage, Fixtures.healthy)
        #expect(verdict.outcome == .fail)
        #expect((verdict.p99Milliseconds ?? 0) > 800)
    }

    @Test("every failing check is listed together")
    func severalFailures() {
        let stage = Fixtures.sample(
            requests: 1000, platformErrors: 100, signatures: ["new": 1], p99: 900, crashes: 1)
        let verdict = evaluate(stage, Fixtures.sample(requests: 1000))
        #expect(verdict.failedChecks == [.newSignatures, .crashes, .errorRate, .errorRateIncrease, .p99])
    }

    // MARK: Without a baseline

    @Test("no baseline: absolute thresholds only, and the verdict says so")
    func noBaseline() {
        let verdict = evaluate(Fixtures.sample(requests: 1000, platformErrors: 5, scriptErrors: 400), nil)
        #expect(verdict.outcome == .pass)
        #expect(!verdict.baselineUsed)
        #expect(verdict.platformErrors.test == nil)
        #expect(verdict.platformErrors.increase == nil)
        #expect(verdict.reasons.last == "no baseline: judged on absolute thresholds only")
        #expect(evaluate(Fixtures.sample(requests: 1000, platformErrors: 50), nil).outcome == .fail)
    }

    @Test("an empty baseline is no baseline, but its signatures still count as seen")
    func emptyBaseline() {
        let stage = Fixtures.sample(requests: 100, signatures: ["loader: bad artifact": 1])
        let baseline = Fixtures.sample(requests: 0, signatures: ["loader: bad artifact": 4])
        let verdict = evaluate(stage, baseline)
        #expect(verdict.outcome == .pass)
        #expect(!verdict.baselineUsed)
        #expect(verdict.reasons.last == "baseline answered no request: judged on absolute thresholds only")
    }

    @Test("more platform errors than requests reads as a 100% error rate")
    func errorsBeyondRequests() {
        let verdict = evaluate(Fixtures.sample(requests: 60, platformErrors: 80), nil)
        #expect(verdict.platformErrors.stageRate == 1)
        #expect(verdict.outcome == .fail)
    }

    // MARK: Samples

    @Test("samples add up; histograms merge; a direct p99 keeps the larger side")
    func addingSamples() {
        var total = Fixtures.sample(requests: 10, platformErrors: 1, signatures: ["a": 1], p99: 30, crashes: 1)
        total.add(Fixtures.sample(requests: 20, scriptErrors: 2, signatures: ["a": 2, "b": 1], p99: 80))
        #expect(total.requests == 30)
        #expect(total.platformErrors == 1)
        #expect(total.scriptErrors == 2)
        #expect(total.signatures == ["a": 3, "b": 1])
        #expect(total.crashes == 1)
        #expect(total.p99 == 80)

        var slow = LatencyHistogram()
        for _ in 0..<100 { slow.record(nanoseconds: 400_000_000) }
        var mixed = Fixtures.sample(requests: 10, p99: 30)
        mixed.add(StageSample(requests: 100, latency: slow))
        #expect((mixed.p99 ?? 0) > 300)  // the histogram side's p99 is not lost

        var a = LatencyHistogram()
        a.record(nanoseconds: 1_000_000)
        var merged = StageSample(requests: 1, latency: a)
        merged.add(StageSample(requests: 1, latency: a))
        #expect(merged.latency?.total == 2)
        #expect(merged.p99Milliseconds == nil)
    }
}
