import BulkheadCore
import Foundation
import Rollout

/// Where the host stands on one script's gradual deployment: the share its
/// workers took last, since when, and each worker's counts at that moment.
struct DeploymentWindow {
    /// The share the window measures.
    var percent: Double
    /// When the last worker of the pool took it (wall clock).
    var acknowledgedAt: Double
    /// Each worker's counts when the window began, by worker instance (a worker
    /// started since then counts from zero).
    var bases: [UInt64: SplitCounts]
}

/// The host's deployment reports, on the supervisor's queue.
struct DeploymentWindows {
    /// By deployment id.
    var windows: [Int: DeploymentWindow] = [:]
    /// Deployments whose report is in the replica (removed once they end).
    var reported: Set<Int> = []
    /// The latest report on each, as written (what a fleet host sends the leader).
    var latest: [Int: DeploymentReport] = [:]
}

extension Supervisor {
    /// How far ahead a new share is set to switch on every worker of a pool: more
    /// than a control message takes to reach a busy worker.
    static let shareSwitchDelay: UInt64 = 100_000_000

    /// `spec` as sent to workers that serve `previous`: a new share of a split
    /// switches on all of them at the same moment (`ScriptSplit.switchAt`).
    func scheduled(_ spec: ScriptSpec, after previous: ScriptSpec?) -> ScriptSpec {
        guard let split = spec.split else { return spec }
        var copy = spec
        copy.split = split.switching(from: previous?.split, now: ScriptSplit.monotonicNanoseconds(), delay: Self.shareSwitchDelay)
        return copy
    }

    /// Every ~200 ms, beside the stage reports: for each script under a split in the
    /// catalog, starts the window once every worker of its pool applies the split's
    /// share, and writes a `DeploymentReport` of the window into the replica; the
    /// reports of deployments that ended are removed.
    func runDeploymentReports(now: Double) {
        var live = Set<Int>()
        for (customer, scripts) in replicaFeed.catalog.scripts {
            guard let cohort = replicaFeed.catalog.assignments[customer], let pool = table.pools[cohort] else { continue }
            for spec in scripts.values {
                guard let split = spec.split else { continue }
                live.insert(split.deployment)
                guard let report = deploymentReport(split, customer: customer, name: spec.name, pool: pool, now: now) else { continue }
                stageRunner.deployments.latest[split.deployment] = report
                do {
                    try replica.saveDeploymentReport(deployment: split.deployment, report: try JSONEncoder().encode(report))
                    stageRunner.deployments.reported.insert(split.deployment)
                } catch {
                    logger.error("cannot write a deployment report; the deployment does not advance", metadata: [
                        "id": "\(split.deployment)", "error": "\(error)",
                    ])
                }
            }
        }
        for id in stageRunner.deployments.windows.keys where !live.contains(id) {
            stageRunner.deployments.windows[id] = nil
        }
        for id in stageRunner.deployments.latest.keys where !live.contains(id) {
            stageRunner.deployments.latest[id] = nil
        }
        for id in stageRunner.deployments.reported.subtracting(live).sorted() {
            if (try? replica.removeDeploymentReport(deployment: id)) != nil { stageRunner.deployments.reported.remove(id) }
        }
    }

    /// The report of one split, or nil until every serving worker of the pool applies
    /// its share (a worker still starting, or one leaving, is not waited for: it
    /// loads the split before it serves, and its counts join the window then).
    func deploymentReport(_ split: ScriptSplit, customer: String, name: String, pool: PoolState, now: Double) -> DeploymentReport? {
        let workers = pool.slots.compactMap { $0 }.filter { $0.ready && !$0.exited && !$0.draining }
        let counts: [(instance: UInt64, entry: SplitCounts?)] = workers.map { worker in
            let entry = worker.stats.splits?.first { entry in
                entry.customer == customer && entry.name == name && entry.deployment == split.deployment
            }
            return (worker.instance, entry)
        }
        var window = stageRunner.deployments.windows[split.deployment]
        if window?.percent != split.percent {
            // A new share: its window starts once the whole pool has it.
            guard !workers.isEmpty, counts.allSatisfy({ $0.entry?.percent == split.percent }) else { return nil }
            var bases: [UInt64: SplitCounts] = [:]
            for (instance, entry) in counts { bases[instance] = entry }
            window = DeploymentWindow(percent: split.percent, acknowledgedAt: now, bases: bases)
            stageRunner.deployments.windows[split.deployment] = window
            logger.info("deployment step acknowledged", metadata: [
                "id": "\(split.deployment)", "script": "\(customer)/\(name)", "percent": "\(split.percent)",
            ])
        }
        guard let window else { return nil }
        var candidate = ScriptVersionCounts()
        var active = ScriptVersionCounts()
        var known = Set<String>()
        for (instance, entry) in counts {
            guard let entry else { continue }
            let base = window.bases[instance]
            candidate.add(entry.candidate.since(base?.candidate))
            active.add(entry.active.since(base?.active))
            for (signature, count) in entry.active.signatures where count > 0 { known.insert(signature) }
            known.formUnion(entry.activeKnownSignatures)
        }
        return DeploymentReport(
            deployment: split.deployment, percent: split.percent, acknowledgedAt: window.acknowledgedAt, measuredAt: now,
            candidate: StageSample(candidate), baseline: StageSample(active), knownSignatures: known.sorted())
    }
}
