#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Control
import Foundation
import Store

extension Supervisor {
    // MARK: - Host operations (served on admin.sock by the HTTP layer)

    // Break glass is the host's own: it writes only the replica's overrides, on the
    // queue (so the stage runner sees them at once), and reads the control store only
    // to choose a version and to list the rollouts running.

    /// Sets or clears the freeze on this host, audited as `actor`, and answers the break-glass state.
    public func setFrozen(_ frozen: Bool, actor: String) -> Result<BreakGlass.Status, ControlError> {
        let result = Result { () throws -> BreakGlass.Status in
            try queue.sync {
                try BreakGlass.setFrozen(frozen, replica: replica, actor: actor)
                reloadOverrides()
                // Stages the freeze held back are taken in now (from the replica's copy).
                if !frozen { retakeRollouts() }
            }
            return try breakGlassState()
        }.mapError(Self.controlFailure)
        // The driver (in the control process) reads the freeze from the replica at its next drive.
        return result
    }

    /// What a break-glass rollback of `kind` would pin where; changes nothing.
    public func rollbackPlan(kind: ArtifactKind, to version: Int?, allowRejected: Bool) -> Result<BreakGlass.RollbackPlan, ControlError> {
        Result { () throws -> BreakGlass.RollbackPlan in
            let running = queue.sync { runningVersions(of: kind) }
            return try BreakGlass.plan(kind: kind, to: version, allowRejected: allowRejected, history: try history(), running: running)
        }.mapError(Self.controlFailure)
    }

    /// Pins every pool of this host to a version of `kind`; the driver aborts the kind's rollout.
    public func breakGlassRollback(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool, actor: String
    ) -> Result<BreakGlass.Status, ControlError> {
        let result = Result { () throws -> BreakGlass.Status in
            let history = try history()
            try queue.sync {
                let pinned = try BreakGlass.rollback(
                    kind: kind, to: version, allowRejected: allowRejected, history: history, replica: replica,
                    content: { artifactContent(kind, version: $0) }, actor: actor)
                reloadOverrides()
                logger.warning("break-glass rollback: every pool pinned", metadata: ["kind": "\(kind)", "version": "\(pinned)"])
                reconcileSlots()
            }
            return try breakGlassState()
        }.mapError(Self.controlFailure)
        // The driver (in the control process) reads the pin at its next drive and aborts the kind's rollout.
        return result
    }

    /// Releases the pin of `kind`; the pinned version stays every pool's current one on this host.
    public func unpin(kind: ArtifactKind, actor: String) -> Result<BreakGlass.Status, ControlError> {
        Result { () throws -> BreakGlass.Status in
            try queue.sync {
                let version = try BreakGlass.unpin(kind: kind, replica: replica, pools: Array(table.pools.keys), actor: actor)
                for pool in table.pools.keys { stageRunner.stages.activeVersions[kind, default: [:]][pool] = version }
                reloadOverrides()
                reconcileSlots()
                logger.warning("break-glass unpin: the pinned version is now every pool's current one",
                               metadata: ["kind": "\(kind)", "version": "\(version)"])
            }
            return try breakGlassState()
        }.mapError(Self.controlFailure)
    }

    /// The freeze, the pins and the rollouts running.
    public func breakGlassStatus() -> Result<BreakGlass.Status, ControlError> {
        Result { try breakGlassState() }.mapError(Self.controlFailure)
    }

    /// The overrides from the replica; the rollouts running from the control store
    /// when it can be read, else from the replica's copy.
    private func breakGlassState() throws -> BreakGlass.Status {
        try BreakGlass.status(replica: replica, history: try? history())
    }

    /// A control store from before break glass moved into the replica may hold a
    /// freeze or pins: they are brought into the replica once (audited there as
    /// `break-glass.import`), then ignored.
    func importLegacyOverrides() {
        guard let legacy = try? store else { return }
        do {
            if try BreakGlass.importLegacy(from: legacy, into: replica) {
                logger.warning("the control store's break-glass freeze and pins were imported into the host replica; they hold until cleared here")
            }
        } catch {
            logger.error("cannot import the control store's break-glass freeze and pins", metadata: ["error": "\(error)"])
        }
    }

    /// The rollouts and versions break glass chooses from (read-only).
    func history() throws -> BreakGlass.History {
        try BreakGlass.History.read(store: { try store }, replica: replica)
    }

    static func controlFailure(_ error: any Error) -> ControlError {
        (error as? ControlError) ?? storeFailure(error)
    }

    /// The host at a glance.
    func status() -> HostStatus {
        let now = Self.now()
        let list = table.pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
            PoolStatus(
                name: pool.cohort.name, order: pool.cohort.order, port: pool.port, desiredWorkers: pool.cohort.workers,
                configSource: pool.configSource, configError: pool.configError, degraded: pool.policy.isDegraded,
                restarts: pool.policy.totalRestarts,
                quarantined: table.quarantined.filter { key in
                    replicaFeed.catalog.assignments[String(key.split(separator: "/").first ?? "")] == pool.cohort.name
                }.sorted(),
                workers: pool.slots.compactMap { $0 }.filter { !$0.exited }.map { worker in
                    var status = WorkerStatus(slot: worker.slot, pid: worker.pid, ready: worker.ready, adopted: !worker.isChild,
                                              heartbeatAge: now - worker.lastHeartbeat, stats: worker.stats)
                    status.lastLoadedScript = worker.lastLoadedScript
                    return status
                })
        }
        var host = HostStatus(supervisorPID: getpid(), takenAt: Date().timeIntervalSince1970, pools: list)
        host.metrics = agent.metricsAddress
        do {
            // Read, not the queue's copy: status says what the replica holds.
            let overrides = try replica.overrides()
            host.frozen = overrides.isFrozen
            host.pins = BreakGlass.pins(overrides)
        } catch {
            // Never a reassuring "not frozen" when the replica could not say.
            host.breakGlassError = "cannot read the freeze and pins from the host replica: \(error)"
        }
        host.rollouts = replicaFeed.rollouts.values.sorted { $0.id < $1.id }.map {
            "rollout \($0.id): \($0.machine.kind) v\($0.machine.targetVersion): \(Self.statusName($0.machine.state))"
        }
        host.feed = feedStatus()
        host.control = controlStatus()
        host.api = host.control?.api
        if let state = helpers.ingress {
            host.ingress = "\(state.host):\(state.port)"
            host.ingressPID = state.process.isRunning ? state.process.pid : nil
        }
        return host
    }

    /// Per pool, the versions of `kind` its workers report running now (on the queue).
    func runningVersions(of kind: ArtifactKind) -> [String: Set<Int>] {
        table.pools.mapValues { pool in
            Set(pool.slots.compactMap { $0 }.filter { !$0.exited }.map { $0.stats.versions[kind] })
        }
    }

    /// `value` as sorted-key JSON text (an audit row's detail).
    func jsonText<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }
}
