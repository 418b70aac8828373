import BulkheadCore
import Rollout
import Store

extension Supervisor {
    // MARK: - Local guard (on the queue)

    /// What this host runs of each rollout now: the slots with its new version. The
    /// guard reads only this (the desired version of each slot, as a replica would
    /// hold it), never the driver's verdicts, so it protects the host with or
    /// without the driver.
    func guardAssignments() -> [GuardAssignment] {
        replicaFeed.rollouts.values.sorted { $0.id < $1.id }.compactMap { rollout in
            let machine = rollout.machine
            guard let stage = machine.currentStage else { return nil }
            var byPool: [String: GuardAssignment.PoolSlots] = [:]
            for index in machine.stagesWithNewVersion {
                let planned = machine.stages[index]
                var entry = byPool[planned.pool]
                    ?? GuardAssignment.PoolSlots(slots: [], maxCrashes: planned.gate.maxCrashes, maxNewSignatures: planned.gate.maxNewSignatures)
                entry.slots = Array(Set(entry.slots + stageSlots(machine, index))).sorted()
                byPool[planned.pool] = entry
            }
            guard !byPool.isEmpty else { return nil }
            return GuardAssignment(rollout: rollout.id, kind: machine.kind, stage: stage, targetVersion: machine.targetVersion,
                                   previousVersion: machine.previousVersion, pools: byPool)
        }
    }

    /// Every tick: the guard learns what the host runs and what each watched pool
    /// showed on other versions, then looks at each watched slot's signatures
    /// under the new version.
    func guardTick(now: Double) {
        guard !agent.shuttingDown else { return }
        let assignments = guardAssignments()
        stageRunner.localGuard.update(assignments)
        var actions: [LocalGuardAction] = []
        for assignment in assignments {
            let kind = assignment.kind, target = assignment.targetVersion
            for (name, watched) in assignment.pools.sorted(by: { $0.key < $1.key }) {
                guard let pool = table.pools[name] else { continue }
                var known = Set<String>()
                for worker in pool.allWorkers { known.formUnion(Self.platformSignatures(of: worker.stats, kind: kind, other: target)) }
                if !stageRunner.localGuard.hasLearned(kind: kind, pool: name) {
                    // The first look: what the pool showed before the stage too,
                    // including workers gone since.
                    for snapshot in stageRunner.poolSnapshots[name] ?? [] {
                        known.formUnion(Self.platformSignatures(of: snapshot, kind: kind, other: target))
                    }
                }
                stageRunner.localGuard.learn(kind: kind, pool: name, signatures: known)
                for slot in watched.slots where pool.slots.indices.contains(slot) {
                    guard let worker = pool.slots[slot], !worker.exited else { continue }
                    let shown = Self.platformSignatures(of: worker.stats, kind: kind, version: target)
                    guard !shown.isEmpty else { continue }
                    actions += stageRunner.localGuard.observe(kind: kind, pool: name, slot: slot, signatures: shown, now: Self.wallClock())
                }
            }
        }
        performGuard(actions)
    }

    /// A worker of a slot ended (not drained): the guard counts it when its slot
    /// runs a new version.
    func guardCrash(of handle: WorkerHandle) {
        stageRunner.localGuard.update(guardAssignments())
        performGuard(stageRunner.localGuard.workerCrashed(pool: handle.pool, slot: handle.slot, blamedScript: handle.blamedScript,
                                              now: Self.wallClock()))
    }

    /// Carries out what the guard decided: the slots go back at once, a log line and
    /// an audit event (in the host's own log) say why, and the trip goes to the
    /// driver with every later stage report of the rollout.
    func performGuard(_ actions: [LocalGuardAction]) {
        for action in actions {
            switch action {
            case .putBack(let report):
                logger.error("local guard: putting the new version's slots back on the last completed version", metadata: [
                    "rollout": "\(report.rollout)", "kind": "\(report.kind)", "from": "\(report.targetVersion)",
                    "to": "\(report.restoredVersion)", "slots": "\(report.slotList)", "reason": "\(report.reason)",
                ])
                for (pool, slots) in report.slots.sorted(by: { $0.key < $1.key }) {
                    ship(report.kind, version: report.restoredVersion, pool: pool, slots: slots)
                }
                do {
                    _ = try replica.appendAudit(actor: "local guard", action: AuditAction("rollout.guard"),
                                                subject: "rollout/\(report.rollout)", detail: jsonText(report))
                } catch {
                    logger.error("cannot record the local guard's action in the host's audit log", metadata: ["error": "\(error)"])
                }
                if let rollout = replicaFeed.rollouts[report.kind], rollout.id == report.rollout { rollout.guardTrip = report }
            }
        }
    }

    // MARK: - Signatures

    /// The platform signatures in a worker's stats made under `version` of `kind`
    /// (its new version).
    static func platformSignatures(of stats: WorkerStats, kind: ArtifactKind, version: Int) -> Set<String> {
        signatures(of: stats, kind: kind) { $0 == version }
    }

    /// The platform signatures in a worker's stats made under any version of `kind`
    /// but `other`.
    static func platformSignatures(of stats: WorkerStats, kind: ArtifactKind, other: Int) -> Set<String> {
        signatures(of: stats, kind: kind) { $0 != other }
    }

    /// The platform signatures in a pool snapshot made under any version of `kind`
    /// but `other`.
    static func platformSignatures(of snapshot: PoolSnapshot, kind: ArtifactKind, other: Int) -> Set<String> {
        if !kind.isCountedPerVersion {
            // A snapshot does not split by binary or policy; taken before the stage, it
            // is the old versions' (what could be the new one's is in the workers' stats).
            return present(snapshot.sample.signatures)
        }
        var result = Set<String>()
        for entry in snapshot.byVersion where entry.version(of: kind) != other { result.formUnion(present(entry.platformSignatures)) }
        return result
    }

    private static func signatures(of stats: WorkerStats, kind: ArtifactKind, matching: (Int) -> Bool) -> Set<String> {
        switch kind {
        case .binary, .policy:
            // A worker runs one binary for its life, and its counts are not split by
            // policy: all its counts are the version it runs.
            return matching(stats.versions[kind]) ? present(stats.platformSignatures) : []
        case .runtime, .rules:
            guard let table = stats.byVersion else {
                let counts = VersionCounts(totalsOf: stats)
                return counts.version(of: kind).map(matching) == true ? present(counts.platformSignatures) : []
            }
            var result = Set<String>()
            for entry in table where entry.version(of: kind).map(matching) == true {
                result.formUnion(present(entry.platformSignatures))
            }
            return result
        }
    }

    private static func present(_ counts: [String: Int]) -> Set<String> {
        Set(counts.compactMap { $0.value > 0 ? $0.key : nil })
    }
}
