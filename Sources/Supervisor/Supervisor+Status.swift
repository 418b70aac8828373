import BulkheadCore
import Foundation
import Rollout
import Store

/// What the host alone knows, asked from other threads (the host routes of
/// admin.sock, `/metrics`): each hops onto the supervisor queue.
extension Supervisor {
    /// The last lines of a script's log on this host: its `log(...)` output and its errors.
    public func scriptLogLines(customer: String, name: String) -> Result<[String], ControlError> {
        .success(queue.sync { table.scriptLogs["\(customer)/\(name)"] ?? [] })
    }

    /// Releases a quarantined script.
    public func releaseQuarantine(customer: String, name: String) -> Result<Void, ControlError> {
        queue.sync { unquarantine(customer: customer, script: name) }
            ? .success(())
            : .failure(ControlError(.notQuarantined, "\(customer)/\(name) is not quarantined"))
    }

    /// The host at a glance (thread-safe).
    public func currentStatus() -> HostStatus {
        queue.sync { status() }
    }

    /// The host at a glance, its report on each running rollout's stage and on each
    /// script deployment's step, taken together (thread-safe): what a fleet host
    /// sends the leader.
    public func currentReport() -> (status: HostStatus, stages: [StageReport], deployments: [DeploymentReport]) {
        queue.sync {
            let now = Self.wallClock()
            let stages = replicaFeed.rollouts.values.sorted { $0.id < $1.id }.compactMap { stageReport($0, now: now) }
            let deployments = stageRunner.deployments.latest.values.sorted { $0.deployment < $1.deployment }
            return (status(), stages, deployments)
        }
    }

    /// Totals per pool for `/metrics` (thread-safe).
    public func metricsSnapshot() -> MetricsSnapshot {
        var snapshot = queue.sync {
            MetricsSnapshot(pools: table.pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
                (pool.cohort.name, table.totals[pool.cohort.name] ?? PoolTotals(),
                 pool.slots.compactMap { $0 }.filter { $0.ready && !$0.exited }.count, pool.cohort.workers, pool.policy.isDegraded)
            })
        }
        let overrides = try? replica.overrides()
        snapshot.frozen = overrides?.isFrozen
        snapshot.pins = overrides.map(BreakGlass.pins) ?? [:]
        return snapshot
    }

    static func storeFailure(_ error: any Error) -> ControlError { .fromStore(error) }
}
