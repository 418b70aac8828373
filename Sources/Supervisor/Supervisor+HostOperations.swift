#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Control
import Foundation
import Store

extension Supervisor {
    // MARK: - Host operations (served on admin.sock by the HTTP layer)

    /// Sets or clears the freeze, audited as `actor`, and answers the break-glass state.
    public func setFrozen(_ frozen: Bool, actor: String) -> Result<BreakGlass.Status, ControlError> {
        Result { () throws -> BreakGlass.Status in
            try BreakGlass.setFrozen(frozen, store: store, actor: actor)
            return try BreakGlass.status(store: store)
        }.mapError(Self.controlFailure)
    }

    /// What a break-glass rollback of `kind` would pin where; changes nothing.
    public func rollbackPlan(kind: ArtifactKind, to version: Int?, allowRejected: Bool) -> Result<BreakGlass.RollbackPlan, ControlError> {
        Result { () throws -> BreakGlass.RollbackPlan in
            let running = queue.sync { runningVersions(of: kind) }
            return try BreakGlass.plan(kind: kind, to: version, allowRejected: allowRejected, store: store, running: running)
        }.mapError(Self.controlFailure)
    }

    /// Pins every pool to a version of `kind` and aborts its rollout.
    public func breakGlassRollback(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool, actor: String
    ) -> Result<BreakGlass.Status, ControlError> {
        // On the queue, whole: no rollout of the kind may advance or save between
        // the abort written to the store and the pin put on the workers.
        Result { () throws -> BreakGlass.Status in
            try queue.sync {
                let pinned = try BreakGlass.rollback(kind: kind, to: version, allowRejected: allowRejected, store: store, actor: actor)
                applyPin(kind, version: pinned)
            }
            return try BreakGlass.status(store: store)
        }.mapError(Self.controlFailure)
    }

    /// Releases the pin of `kind`; the pinned version stays every pool's current one.
    public func unpin(kind: ArtifactKind, actor: String) -> Result<BreakGlass.Status, ControlError> {
        Result { () throws -> BreakGlass.Status in
            try queue.sync {
                let version = try BreakGlass.unpin(kind: kind, store: store, pools: Array(pools.keys), actor: actor)
                logger.warning("break-glass unpin: the pinned version is now every pool's current one",
                               metadata: ["kind": "\(kind)", "version": "\(version)"])
            }
            return try BreakGlass.status(store: store)
        }.mapError(Self.controlFailure)
    }

    /// The freeze, the pins and the rollouts running.
    public func breakGlassStatus() -> Result<BreakGlass.Status, ControlError> {
        Result { try BreakGlass.status(store: store) }.mapError(Self.controlFailure)
    }

    static func controlFailure(_ error: any Error) -> ControlError {
        (error as? ControlError) ?? storeFailure(error)
    }

    /// The host at a glance.
    func status() -> HostStatus {
        let now = Self.now()
        let list = pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
            PoolStatus(
                name: pool.cohort.name, order: pool.cohort.order, port: pool.port, desiredWorkers: pool.cohort.workers,
                configSource: pool.configSource, configError: pool.configError, degraded: pool.policy.isDegraded,
                restarts: pool.policy.totalRestarts,
                quarantined: quarantined.filter { key in
                    catalog.assignments[String(key.split(separator: "/").first ?? "")] == pool.cohort.name
                }.sorted(),
                workers: pool.slots.compactMap { $0 }.filter { !$0.exited }.map { worker in
                    var status = WorkerStatus(slot: worker.slot, pid: worker.pid, ready: worker.ready, adopted: !worker.isChild,
                                              heartbeatAge: now - worker.lastHeartbeat, stats: worker.stats)
                    status.lastLoadedScript = worker.lastLoadedScript
                    return status
                })
        }
        var host = HostStatus(supervisorPID: getpid(), takenAt: Date().timeIntervalSince1970, pools: list)
        host.metrics = metricsAddress
        do {
            host.frozen = try store.isFrozen()
            host.pins = try BreakGlass.pins(store: store)
        } catch {
            // Never a reassuring "not frozen" when the store could not say.
            host.breakGlassError = "cannot read the freeze and pins from the store: \(error)"
        }
        host.rollouts = rollouts.values.sorted { $0.id < $1.id }.map {
            "rollout \($0.id): \($0.machine.kind) v\($0.machine.targetVersion): \(Self.statusName($0.machine.state))"
        }
        host.feed = feedStatus()
        host.control = controlStatus()
        host.api = host.control?.api
        if let state = ingress {
            host.ingress = "\(state.host):\(state.port)"
            host.ingressPID = state.process.isRunning ? state.process.pid : nil
        }
        return host
    }

    /// Per pool, the versions of `kind` its workers report running now (on the queue).
    func runningVersions(of kind: ArtifactKind) -> [String: Set<Int>] {
        pools.mapValues { pool in
            Set(pool.slots.compactMap { $0 }.filter { !$0.exited }.map { worker in
                switch kind {
                case .runtime: worker.stats.versions.runtime
                case .rules: worker.stats.versions.rules
                case .binary: worker.stats.versions.binary
                }
            })
        }
    }

    /// `value` as sorted-key JSON text (an audit row's detail).
    func jsonText<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }
}
