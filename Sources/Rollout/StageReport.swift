/// What a host agent reports on the current stage of a running rollout: the stage
/// it applied and when, and what the stage's slots (and their baseline) served since.
/// The control plane's driver judges the stage on it (`RolloutMachine.observe`);
/// a report on another stage or version than the machine's current one is stale.
///
/// Written by the host into its replica (`HostReplica.saveStageReport`), read by the
/// driver; Codable so it crosses that process boundary as a typed value.
public struct StageReport: Codable, Sendable, Equatable {
    /// The rollout.
    public var rollout: Int
    /// The stage the host applied (an index into the rollout's plan).
    public var stage: Int
    /// The version the stage ships.
    public var version: Int
    /// When the host put the stage's version on its slots (wall-clock seconds): the
    /// start of the measurement window.
    public var acknowledgedAt: Double
    /// When the sample was taken (wall-clock seconds).
    public var measuredAt: Double
    /// What the stage's slots served under `version` since `acknowledgedAt`.
    public var sample: StageSample
    /// The stage's baseline over the same window (the plan says which), when it has one.
    public var baseline: StageSample?
    /// Set when the host's local guard put the stage's slots back on its own.
    public var guardTrip: LocalGuardReport?

    /// A report.
    public init(
        rollout: Int, stage: Int, version: Int, acknowledgedAt: Double, measuredAt: Double,
        sample: StageSample, baseline: StageSample?, guardTrip: LocalGuardReport? = nil
    ) {
        self.rollout = rollout
        self.stage = stage
        self.version = version
        self.acknowledgedAt = acknowledgedAt
        self.measuredAt = measuredAt
        self.sample = sample
        self.baseline = baseline
        self.guardTrip = guardTrip
    }
}
