import BulkheadCore

/// Judges one stage of a rollout against its pool's gate. Pure: the same samples and
/// elapsed time always give the same verdict.
public enum HealthGate {
    /// Significance level of the one-sided increase tests. 0.01 because the gate is
    /// checked several times a second: each look is another chance of a false alarm,
    /// and a false rollback costs a whole rollout.
    public static let alpha = 0.01

    /// Evaluates a stage.
    ///
    /// In this order:
    /// 1. **At once**, whatever the bake time or traffic: more new error signatures
    ///    than `maxNewSignatures` (in the stage, absent from the baseline and from
    ///    `knownSignatures`) or more crashes than `maxCrashes` fail the stage (crashes
    ///    a customer script was blamed for are left out, and the verdict lists them). A
    ///    brand-new signature needs no statistics, and waiting would keep a broken
    ///    artifact serving.
    /// 2. Fewer requests than `minRequests` (and never fewer than one), or no latency
    ///    measured: keep baking, and past `maxBakeSeconds` inconclusive — missing
    ///    data never passes.
    /// 3. Before `bakeSeconds`: keep baking.
    /// 4. Then the thresholds: platform error rate above `maxErrorRate`; its increase
    ///    over the baseline above `maxErrorRateIncrease` and significant at `alpha`;
    ///    the same increase test for customer script errors; p99 above
    ///    `maxP99Milliseconds`. Any failure fails the stage, else it passes.
    ///
    /// Customer script errors get the *increase* test only, with the same
    /// `maxErrorRateIncrease` and α as platform errors, and not `maxErrorRate`:
    /// their absolute level is the customers' own doing (one buggy script can fail
    /// half its requests on any version), while an increase over the old version's
    /// workers under the same traffic is what a platform change that breaks scripts
    /// looks like.
    ///
    /// Without a baseline, or with one that answered no request, only the absolute
    /// thresholds judge (error rate, p99, crashes, and signatures against
    /// `knownSignatures` alone), and the verdict says so.
    ///
    /// - Parameters:
    ///   - gate: the pool's thresholds.
    ///   - stage: the stage's window, since its bake began.
    ///   - baseline: the old version's window (see `RolloutPlan.baseline`), or nil.
    ///   - elapsedSeconds: how long the stage has baked.
    ///   - knownSignatures: signatures seen on the old version before or during the
    ///     rollout; they are never new.
    public static func evaluate(
        gate: CohortConfiguration.Gate, stage: StageSample, baseline: StageSample?, elapsedSeconds: Double,
        knownSignatures: Set<String> = []
    ) -> GateVerdict {
        let elapsed = elapsedSeconds.isFinite ? max(0, elapsedSeconds) : 0
        let requests = max(0, stage.requests)
        let baselineRequests = baseline.map { max(0, $0.requests) }
        let baselineUsed = (baselineRequests ?? 0) > 0
        let baselineCounts: (platform: (count: Int, total: Int), script: (count: Int, total: Int))? =
            if let baseline, baselineUsed {
                (
                    (max(0, baseline.platformErrors), max(0, baseline.requests)),
                    (max(0, baseline.scriptErrors), max(0, baseline.requests))
                )
            } else {
                nil
            }
        let platform = ProportionComparison.compare(
            label: "platform errors", stageCount: max(0, stage.platformErrors), stageTotal: requests,
            baseline: baselineCounts?.platform, maxRate: gate.maxErrorRate,
            maxIncrease: gate.maxErrorRateIncrease, alpha: alpha)
        let script = ProportionComparison.compare(
            label: "script errors", stageCount: max(0, stage.scriptErrors), stageTotal: requests,
            baseline: baselineCounts?.script, maxRate: nil,
            maxIncrease: gate.maxErrorRateIncrease, alpha: alpha)

        // A baseline that answered nothing can still have seen signatures (an
        // artifact load failure, say); they were seen on the old version, so they
        // are not new.
        let seenBefore = knownSignatures.union(baseline?.presentSignatures ?? [])
        var newSignatures: [String: Int] = [:]
        for (signature, count) in stage.signatures where count > 0 && !seenBefore.contains(signature) {
            newSignatures[signature] = count
        }
        let crashes = max(0, stage.crashes)
        let crashesLeftOut = stage.crashesLeftOut.filter { $0.value > 0 }
        let p99 = stage.p99

        var failed: [GateVerdict.Check] = []
        var reasons: [String] = []
        if newSignatures.count > gate.maxNewSignatures {
            failed.append(.newSignatures)
            let listed = newSignatures.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
                .prefix(5).map { "\"\($0.key)\" ×\($0.value)" }.joined(separator: ", ")
            reasons.append(
                "\(newSignatures.count) new error signature(s), max \(gate.maxNewSignatures): \(listed)")
        }
        if crashes > gate.maxCrashes {
            failed.append(.crashes)
            reasons.append("\(crashes) worker crash(es), max \(gate.maxCrashes)")
        }

        let neededRequests = max(1, gate.minRequests)
        let outcome: GateVerdict.Outcome
        if requests < neededRequests || p99 == nil {
            var missing: [String] = []
            if requests < neededRequests { missing.append("\(requests) of \(neededRequests) requests needed") }
            if p99 == nil { missing.append("no latency measured") }
            if !failed.isEmpty {
                outcome = .fail
            } else if elapsed >= gate.maxBakeSeconds {
                outcome = .inconclusive
                reasons.append(
                    "inconclusive after \(Format.seconds(elapsed)) (max bake \(Format.seconds(gate.maxBakeSeconds))): "
                        + missing.joined(separator: ", "))
            } else {
                outcome = .keepBaking
                reasons.append("waiting for data: " + missing.joined(separator: ", "))
            }
        } else if elapsed < gate.bakeSeconds {
            if !failed.isEmpty {
                outcome = .fail
            } else {
                outcome = .keepBaking
                reasons.append("baking: \(Format.seconds(elapsed)) of \(Format.seconds(gate.bakeSeconds))")
            }
        } else {
            if platform.exceedsRate, let rate = platform.stageRate {
                failed.append(.errorRate)
                reasons.append("platform error rate \(Format.percent(rate)) > max \(Format.percent(gate.maxErrorRate)): \(platform)")
            }
            if platform.exceedsIncrease {
                failed.append(.errorRateIncrease)
                reasons.append(
                    "platform error rate increase > max \(Format.fixed(gate.maxErrorRateIncrease * 100, 2)) pts "
                        + "and significant at α = \(Format.fixed(alpha, 2)): \(platform)")
            }
            if script.exceedsIncrease {
                failed.append(.scriptErrorRateIncrease)
                reasons.append(
                    "script error rate increase > max \(Format.fixed(gate.maxErrorRateIncrease * 100, 2)) pts "
                        + "and significant at α = \(Format.fixed(alpha, 2)): \(script)")
            }
            if let p99, p99 > gate.maxP99Milliseconds {
                failed.append(.p99)
                reasons.append("p99 \(Format.milliseconds(p99)) > max \(Format.milliseconds(gate.maxP99Milliseconds))")
            }
            if failed.isEmpty {
                outcome = .pass
                reasons.append(
                    "all checks held: \(platform); \(script); p99 \(p99.map(Format.milliseconds) ?? "n/a"); "
                        + "\(crashes) crash(es); no new signature beyond \(gate.maxNewSignatures)")
            } else {
                outcome = .fail
            }
        }
        if !crashesLeftOut.isEmpty {
            let total = crashesLeftOut.values.reduce(0, +)
            let listed = crashesLeftOut.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
                .prefix(5).map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            reasons.append("\(total) crash(es) left out, already blamed on a customer script: \(listed)")
        }
        if !baselineUsed {
            reasons.append(
                baseline == nil
                    ? "no baseline: judged on absolute thresholds only"
                    : "baseline answered no request: judged on absolute thresholds only")
        }
        return GateVerdict(
            outcome: outcome, failedChecks: failed, reasons: reasons, gate: gate, alpha: alpha,
            elapsedSeconds: elapsed, requests: requests, baselineRequests: baselineRequests,
            baselineUsed: baselineUsed, platformErrors: platform, scriptErrors: script,
            newSignatures: newSignatures, p99Milliseconds: p99, baselineP99Milliseconds: baseline?.p99,
            crashes: crashes, crashesLeftOut: crashesLeftOut)
    }
}
