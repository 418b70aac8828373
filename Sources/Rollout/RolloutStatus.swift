import BulkheadCore
/// A rollout as `bulkhead rollout status` shows it.
public struct RolloutStatus: Codable, Sendable, Equatable {
    /// One stage.
    public struct StageStatus: Codable, Sendable, Equatable {
        /// Its index in the plan.
        public var index: Int
        /// Its display name.
        public var name: String
        /// Its pool.
        public var pool: String
        /// Its worker slots.
        public var slots: [Int]
        /// Where it is.
        public var progress: RolloutMachine.StageProgress
        /// Whether its slots run the new version now.
        public var hasNewVersion: Bool

        /// Creates a stage status.
        public init(
            index: Int, name: String, pool: String, slots: [Int], progress: RolloutMachine.StageProgress,
            hasNewVersion: Bool
        ) {
            self.index = index
            self.name = name
            self.pool = pool
            self.slots = slots
            self.progress = progress
            self.hasNewVersion = hasNewVersion
        }
    }

    /// The artifact kind.
    public var kind: ArtifactKind
    /// The version rolled out.
    public var targetVersion: Int
    /// The version a rollback restores.
    public var previousVersion: Int
    /// Where the rollout is.
    public var state: RolloutMachine.State
    /// Whether a global freeze holds it.
    public var frozen: Bool
    /// The stage being baked or paused, if any.
    public var currentStage: Int?
    /// When the current stage's bake clock started.
    public var bakeStartedAt: Double?
    /// Every stage, in plan order.
    public var stages: [StageStatus]
    /// The stages whose slots run the new version now.
    public var stagesWithNewVersion: [Int]
    /// The current stage's latest verdict, with its numbers.
    public var lastVerdict: GateVerdict?
    /// The decision log, oldest first.
    public var decisions: [RolloutDecision]

    /// Creates a status.
    public init(
        kind: ArtifactKind, targetVersion: Int, previousVersion: Int, state: RolloutMachine.State, frozen: Bool,
        currentStage: Int?, bakeStartedAt: Double?, stages: [StageStatus], stagesWithNewVersion: [Int],
        lastVerdict: GateVerdict?, decisions: [RolloutDecision]
    ) {
        self.kind = kind
        self.targetVersion = targetVersion
        self.previousVersion = previousVersion
        self.state = state
        self.frozen = frozen
        self.currentStage = currentStage
        self.bakeStartedAt = bakeStartedAt
        self.stages = stages
        self.stagesWithNewVersion = stagesWithNewVersion
        self.lastVerdict = lastVerdict
        self.decisions = decisions
    }
}
