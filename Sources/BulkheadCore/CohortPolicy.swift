/// The part of a cohort that is one fleet-wide policy rather than one host's
/// business: its rollout order, its scripts' limits and its health gate. Shipped as
/// an artifact of kind `policy` through a rollout like any platform change (a limit
/// made smaller is a config change, and config changes are what took down proxies
/// fleet-wide), while each host's cohort file keeps its port, its worker counts and
/// its restart policy.
///
/// Its text is a cohort file's, host-local keys allowed and ignored, so an operator
/// rolls out the file they edited: `bulkhead rollout start --kind policy cohorts/free.toml`.
public struct CohortPolicy: Codable, Sendable, Equatable {
    /// The cohort it is the policy of.
    public var cohort: String
    /// Rollout order: lower cohorts get a platform change first.
    public var order: Int
    /// Per-request limits of the cohort's scripts.
    public var limits: CohortConfiguration.Limits
    /// The health gate every rollout stage on the cohort must pass.
    public var gate: CohortConfiguration.Gate

    /// Creates a policy.
    public init(cohort: String, order: Int, limits: CohortConfiguration.Limits, gate: CohortConfiguration.Gate) {
        self.cohort = cohort
        self.order = order
        self.limits = limits
        self.gate = gate
    }

    /// The policy a cohort file gives (what version 0 of a pool's policy is).
    public init(_ cohort: CohortConfiguration) {
        self.init(cohort: cohort.name, order: cohort.order, limits: cohort.limits, gate: cohort.gate)
    }

    /// `cohort` under this policy: its order, limits and gate replaced, the rest kept.
    public func applied(to cohort: CohortConfiguration) -> CohortConfiguration {
        var result = cohort
        result.order = order
        result.limits = limits
        result.gate = gate
        return result
    }
}
