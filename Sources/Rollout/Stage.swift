import BulkheadCore

/// One step of a rollout: a set of worker slots of one pool that gets the new
/// version together and must pass its pool's health gate before the next step.
///
/// A stage names **slots**, not pids: a canary worker that crashes and is restarted
/// comes back in the same slot, so it keeps the version its stage was given.
public struct Stage: Codable, Sendable, Equatable {
    /// The pool (cohort) the slots belong to.
    public var pool: String
    /// The worker slots of `pool` in this stage, ascending.
    public var slots: [Int]
    /// A name for people: `"free canary"`, `"free"`, `"pro"`.
    public var name: String
    /// Whether this is the canary stage (part of the first pool only).
    public var isCanary: Bool
    /// The thresholds the stage must pass: those of its pool.
    public var gate: CohortConfiguration.Gate

    /// Creates a stage.
    public init(pool: String, slots: [Int], name: String, isCanary: Bool = false, gate: CohortConfiguration.Gate) {
        self.pool = pool
        self.slots = slots
        self.name = name
        self.isCanary = isCanary
        self.gate = gate
    }
}
