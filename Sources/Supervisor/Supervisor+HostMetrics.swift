import BulkheadCore

/// One pool's readiness, for the host's `/healthz`.
public struct PoolReadiness: Codable, Sendable, Equatable {
    /// The pool (cohort) name.
    public var name: String
    /// Workers in its slots that accept traffic now.
    public var ready: Int
    /// Workers the pool should have.
    public var desired: Int
    /// Whether the pool restarted too often and backs off.
    public var degraded: Bool

    /// Creates a pool's readiness.
    public init(name: String, ready: Int, desired: Int, degraded: Bool) {
        self.name = name
        self.ready = ready
        self.desired = desired
        self.degraded = degraded
    }
}

extension Supervisor {
    /// Each pool's ready workers, in rollout order (thread-safe). Reads no store:
    /// `/healthz` answers from what the supervisor holds in memory.
    public func poolReadiness() -> [PoolReadiness] {
        queue.sync {
            table.pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
                PoolReadiness(
                    name: pool.cohort.name, ready: pool.slots.compactMap { $0 }.filter { $0.ready && !$0.exited }.count,
                    desired: pool.cohort.workers, degraded: pool.policy.isDegraded)
            }
        }
    }

    /// Records where the host's `/metrics` and `/healthz` listen (shown by `status`).
    public func metricsListening(on address: String) {
        queue.async { self.agent.metricsAddress = address }
    }
}
