import BulkheadCore

/// What a host agent reports on a script's gradual deployment: the share its workers
/// took and when, and what each version of the script answered since. The control
/// plane's deployment driver judges the step on it (`DeploymentMachine.observe`); a
/// report on another share than the machine's current step is stale.
///
/// Written by the host into its replica (one machine) and carried in its reports
/// (a fleet); Codable so it crosses those process boundaries as a typed value.
public struct DeploymentReport: Codable, Sendable, Equatable {
    /// The deployment.
    public var deployment: Int
    /// The candidate's share every worker of the pool applies, in percent.
    public var percent: Double
    /// When the last worker of the pool took that share (wall-clock seconds): the
    /// start of the measurement window.
    public var acknowledgedAt: Double
    /// When the sample was taken (wall-clock seconds).
    public var measuredAt: Double
    /// What the candidate version answered since `acknowledgedAt`.
    public var candidate: StageSample
    /// What the active version answered over the same window: the baseline.
    public var baseline: StageSample
    /// Error signatures the active version showed at any time under this
    /// deployment: never new for the candidate.
    public var knownSignatures: [String]

    /// A report.
    public init(
        deployment: Int, percent: Double, acknowledgedAt: Double, measuredAt: Double, candidate: StageSample,
        baseline: StageSample, knownSignatures: [String]
    ) {
        self.deployment = deployment
        self.percent = percent
        self.acknowledgedAt = acknowledgedAt
        self.measuredAt = measuredAt
        self.candidate = candidate
        self.baseline = baseline
        self.knownSignatures = knownSignatures
    }

    /// Adds another host's report on the same deployment and share: the window
    /// starts when the last host took the share.
    public mutating func add(_ other: DeploymentReport) {
        acknowledgedAt = max(acknowledgedAt, other.acknowledgedAt)
        measuredAt = max(measuredAt, other.measuredAt)
        candidate.add(other.candidate)
        baseline.add(other.baseline)
        knownSignatures = Array(Set(knownSignatures).union(other.knownSignatures)).sorted()
    }
}

extension StageSample {
    /// A script version's counts as a gate sample: its script errors, and their
    /// signatures as the signatures the gate looks for new ones in.
    public init(_ counts: ScriptVersionCounts) {
        self.init(
            requests: counts.requests, scriptErrors: counts.scriptErrors,
            signatures: counts.signatures.filter { $0.value > 0 }, latency: counts.latency)
    }
}
