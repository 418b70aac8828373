import BulkheadCore

/// A script's active version as the supervisor ships it to the workers of a pool.
public struct ActiveScript: Sendable, Equatable {
    /// Customer, name, active version and source, and the split of an unfinished
    /// deployment that gives its candidate a share (with the candidate's source),
    /// ready for `SupervisorMessage.putScript`.
    public var spec: ScriptSpec
    /// The owner's cohort: the pool whose workers load the script.
    public var cohort: String
    /// SHA-256 hex of the source.
    public var sha256: String
    /// Whether the script is quarantined (workers answer `quarantined` instead of running it).
    public var quarantined: Bool

    /// Creates a value.
    public init(spec: ScriptSpec, cohort: String, sha256: String, quarantined: Bool) {
        self.spec = spec
        self.cohort = cohort
        self.sha256 = sha256
        self.quarantined = quarantined
    }
}
