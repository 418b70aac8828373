import BulkheadCore

/// The last known good configuration of each pool, for starting a pool whose cohort
/// file has turned bad. The host replica (`HostReplica`) keeps them: the agent that
/// starts the pools is their only writer.
public protocol KnownGoodStore: Sendable {
    /// Saves `configuration` as its pool's (`configuration.name`) last known good one.
    /// Saving the configuration already stored changes nothing and audits nothing.
    func saveKnownGood(_ configuration: CohortConfiguration, actor: String) throws

    /// The pool's last known good configuration, or nil.
    func knownGood(pool: String) throws -> KnownGoodCohort?

    /// Every pool's last known good configuration, by pool name.
    func knownGoodCohorts() throws -> [KnownGoodCohort]
}
