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
    /// In a fleet, the hosts whose pool takes the stage's version on `slots` (a host
    /// outside the list keeps the old version there until a later stage names it);
    /// nil on one machine, where every stage is the host's own.
    public var hosts: [String]?

    /// Creates a stage.
    public init(pool: String, slots: [Int], name: String, isCanary: Bool = false, gate: CohortConfiguration.Gate, hosts: [String]? = nil) {
        self.pool = pool
        self.slots = slots
        self.name = name
        self.isCanary = isCanary
        self.gate = gate
        self.hosts = hosts
    }

    /// Whether the stage puts its version on `slot` of `pool` on `host` (nil: one
    /// machine's, which every stage covers).
    public func covers(pool: String, slot: Int, host: String?) -> Bool {
        guard self.pool == pool, slots.contains(slot) else { return false }
        guard let hosts, let host else { return true }
        return hosts.contains(host)
    }
}
