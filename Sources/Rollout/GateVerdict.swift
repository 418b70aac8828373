import BulkheadCore

/// What the health gate decided about a stage, with every number behind it, so the
/// decision log can show why (Argo users' complaint: "no numbers logged with the
/// decision").
public struct GateVerdict: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The decision.
    public enum Outcome: String, Codable, Sendable {
        /// Every check held after the bake with enough traffic: the stage may advance.
        case pass
        /// A check failed: roll back.
        case fail
        /// No verdict yet: the bake time has not passed or the traffic is not enough.
        case keepBaking = "keep-baking"
        /// Still not enough data at `maxBakeSeconds`: pause for an operator. Never
        /// a pass — a stage nobody measured has not shown it is healthy.
        case inconclusive
    }

    /// One check of the gate.
    public enum Check: String, Codable, Sendable, CaseIterable {
        /// More error signatures absent from the baseline than `maxNewSignatures`.
        case newSignatures = "new-signatures"
        /// More worker crashes than `maxCrashes`.
        case crashes
        /// Platform error rate above `maxErrorRate`.
        case errorRate = "error-rate"
        /// Platform error rate above the baseline's by more than
        /// `maxErrorRateIncrease`, and significantly so.
        case errorRateIncrease = "error-rate-increase"
        /// Script error rate above the baseline's by more than
        /// `maxErrorRateIncrease`, and significantly so.
        case scriptErrorRateIncrease = "script-error-rate-increase"
        /// p99 latency above `maxP99Milliseconds`.
        case p99
    }

    /// The decision.
    public var outcome: Outcome
    /// The checks that failed (empty unless `outcome` is `.fail`).
    public var failedChecks: [Check]
    /// One line per reason, for people: each failed check with its numbers, or why
    /// the gate is still baking, is inconclusive, or passed.
    public var reasons: [String]
    /// The thresholds applied.
    public var gate: CohortConfiguration.Gate
    /// The significance level of the increase tests.
    public var alpha: Double
    /// Seconds the stage had baked when judged.
    public var elapsedSeconds: Double
    /// Requests the stage answered in its window.
    public var requests: Int
    /// Requests the baseline answered in its window (nil: no baseline).
    public var baselineRequests: Int?
    /// Whether a baseline with traffic was compared; when false only the absolute
    /// thresholds judged the stage (and `reasons` says so).
    public var baselineUsed: Bool
    /// Platform errors, stage against baseline.
    public var platformErrors: ProportionComparison
    /// Customer script errors, stage against baseline.
    public var scriptErrors: ProportionComparison
    /// Signatures in the stage that neither the baseline nor the known set has, with
    /// their counts in the stage.
    public var newSignatures: [String: Int]
    /// The stage's p99 latency in milliseconds (nil: nothing measured).
    public var p99Milliseconds: Double?
    /// The baseline's p99 latency in milliseconds, for reference (not a threshold).
    public var baselineP99Milliseconds: Double?
    /// Worker crashes in the stage (those a script was blamed for left out).
    public var crashes: Int
    /// Crashes in the stage left out of `crashes` because a customer script was
    /// already blamed for them, by script (`customer/name`). Nil in verdicts
    /// recorded before crashes were ever left out.
    public var crashesLeftOut: [String: Int]?

    /// Creates a verdict; `HealthGate.evaluate` computes one.
    public init(
        outcome: Outcome, failedChecks: [Check], reasons: [String], gate: CohortConfiguration.Gate, alpha: Double,
        elapsedSeconds: Double, requests: Int, baselineRequests: Int?, baselineUsed: Bool,
        platformErrors: ProportionComparison, scriptErrors: ProportionComparison, newSignatures: [String: Int],
        p99Milliseconds: Double?, baselineP99Milliseconds: Double?, crashes: Int, crashesLeftOut: [String: Int]? = nil
    ) {
        self.outcome = outcome
        self.failedChecks = failedChecks
        self.reasons = reasons
        self.gate = gate
        self.alpha = alpha
        self.elapsedSeconds = elapsedSeconds
        self.requests = requests
        self.baselineRequests = baselineRequests
        self.baselineUsed = baselineUsed
        self.platformErrors = platformErrors
        self.scriptErrors = scriptErrors
        self.newSignatures = newSignatures
        self.p99Milliseconds = p99Milliseconds
        self.baselineP99Milliseconds = baselineP99Milliseconds
        self.crashes = crashes
        self.crashesLeftOut = crashesLeftOut
    }

    /// One line: the outcome, then the reasons.
    public var description: String {
        "\(outcome.rawValue) after \(Format.seconds(elapsedSeconds)), \(requests) requests: "
            + reasons.joined(separator: "; ")
    }
}

/// One error proportion of a stage set against its baseline, with the test that
/// judged the difference.
public struct ProportionComparison: Codable, Sendable, Equatable, CustomStringConvertible {
    /// What is counted (`"platform errors"`, `"script errors"`).
    public var label: String
    /// Errors in the stage (as reported; the rate clamps it to `stageTotal`).
    public var stageCount: Int
    /// Requests in the stage.
    public var stageTotal: Int
    /// The stage's error rate; nil without requests.
    public var stageRate: Double?
    /// Errors in the baseline; nil without a baseline.
    public var baselineCount: Int?
    /// Requests in the baseline; nil without a baseline.
    public var baselineTotal: Int?
    /// The baseline's error rate; nil without baseline requests.
    public var baselineRate: Double?
    /// `stageRate − baselineRate` (negative when the stage is better).
    public var increase: Double?
    /// The one-sided test of the increase; nil when either side has no requests.
    public var test: TwoProportionTest?
    /// Whether `test` found the stage worse at the gate's α.
    public var significant: Bool
    /// The absolute rate limit applied, or nil when none is (script errors).
    public var maxRate: Double?
    /// The increase limit applied.
    public var maxIncrease: Double

    /// Creates a comparison; `compare(…)` computes one.
    public init(
        label: String, stageCount: Int, stageTotal: Int, stageRate: Double?, baselineCount: Int?,
        baselineTotal: Int?, baselineRate: Double?, increase: Double?, test: TwoProportionTest?, significant: Bool,
        maxRate: Double?, maxIncrease: Double
    ) {
        self.label = label
        self.stageCount = stageCount
        self.stageTotal = stageTotal
        self.stageRate = stageRate
        self.baselineCount = baselineCount
        self.baselineTotal = baselineTotal
        self.baselineRate = baselineRate
        self.increase = increase
        self.test = test
        self.significant = significant
        self.maxRate = maxRate
        self.maxIncrease = maxIncrease
    }

    /// Compares `stageCount / stageTotal` with the baseline's proportion.
    ///
    /// - Parameters:
    ///   - baseline: the baseline's errors and requests; nil or 0 requests means
    ///     no comparison (rates and test nil, never significant).
    ///   - alpha: the significance level of the one-sided test.
    public static func compare(
        label: String, stageCount: Int, stageTotal: Int, baseline: (count: Int, total: Int)?,
        maxRate: Double?, maxIncrease: Double, alpha: Double
    ) -> ProportionComparison {
        let stageRate = rate(stageCount, stageTotal)
        let baselineRate = baseline.flatMap { rate($0.count, $0.total) }
        var increase: Double?
        if let stageRate, let baselineRate { increase = stageRate - baselineRate }
        var test: TwoProportionTest?
        if let baseline {
            test = TwoProportionTest.oneSided(
                stageCount: stageCount, stageTotal: stageTotal, baselineCount: baseline.count,
                baselineTotal: baseline.total)
        }
        return ProportionComparison(
            label: label, stageCount: stageCount, stageTotal: stageTotal, stageRate: stageRate,
            baselineCount: baseline?.count, baselineTotal: baseline?.total, baselineRate: baselineRate,
            increase: increase, test: test, significant: test?.isSignificant(at: alpha) ?? false,
            maxRate: maxRate, maxIncrease: maxIncrease)
    }

    /// `count / total` with the count clamped into `0...total` (more errors than
    /// requests — load failures without traffic — reads as every request failing);
    /// nil without requests.
    static func rate(_ count: Int, _ total: Int) -> Double? {
        guard total > 0 else { return nil }
        return Double(min(max(count, 0), total)) / Double(total)
    }

    /// Whether the rate is above `maxRate`.
    public var exceedsRate: Bool {
        guard let maxRate, let stageRate else { return false }
        return stageRate > maxRate
    }

    /// Whether the increase is above `maxIncrease` *and* significant: a large
    /// increase on a handful of requests is noise, and a significant but tiny one
    /// is not worth a rollback.
    public var exceedsIncrease: Bool {
        guard let increase else { return false }
        return increase > maxIncrease && significant
    }

    /// The numbers in one phrase, e.g. `platform errors 30/1000 = 3.00% vs baseline
    /// 1/1000 = 0.10% (+2.90 pts, pooled-z z = 5.25, p = 7.6e-8)`.
    public var description: String {
        var text = "\(label) \(stageCount)/\(stageTotal)"
        if let stageRate { text += " = \(Format.percent(stageRate))" }
        if let baselineCount, let baselineTotal {
            text += " vs baseline \(baselineCount)/\(baselineTotal)"
            if let baselineRate { text += " = \(Format.percent(baselineRate))" }
        } else {
            text += " (no baseline)"
        }
        var details: [String] = []
        if let increase { details.append("\(increase >= 0 ? "+" : "")\(Format.fixed(increase * 100, 2)) pts") }
        if let test {
            var testText = test.method.rawValue
            if let z = test.z { testText += " z = \(Format.fixed(z, 2))" }
            testText += ", p = \(Format.probability(test.pValue))"
            details.append(testText)
        }
        if !details.isEmpty { text += " (" + details.joined(separator: ", ") + ")" }
        return text
    }
}
