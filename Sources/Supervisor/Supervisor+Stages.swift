#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Control
import Foundation
import Rollout
import Store

/// A running rollout as the host's stage runner sees it: the machine the driver last
/// saved (read from the feed or the replica, never written here) and what the host
/// needs to measure its stage. Touched only on the supervisor queue.
final class ActiveRollout {
    let id: Int
    /// The driver's machine, as last read.
    var machine: RolloutMachine
    /// The stage and bake start the host last put on the slots and acknowledged; a
    /// different pair in the machine (a new stage, a window the driver restarted)
    /// is acknowledged anew.
    var acknowledged: (stage: Int, bakeStartedAt: Double?)?
    /// When the host acknowledged it (wall clock): the window's start.
    var acknowledgedAt = 0.0
    /// Each worker's stats when the current stage's window began (by pid).
    var windowBase: [pid_t: WorkerStats] = [:]
    /// Worker crashes in the current stage's slots since the window began, but
    /// for those a customer script was blamed for.
    var windowCrashes = 0
    /// Crashes in the stage's slots since the window began that a customer script
    /// was blamed for, by script: left out of the gate's count, shown in its verdict.
    var windowCrashesLeftOut: [String: Int] = [:]
    /// What the local guard did to this rollout's slots, reported with every stage
    /// report until the rollout ends.
    var guardTrip: LocalGuardReport?

    init(id: Int, machine: RolloutMachine) {
        self.id = id
        self.machine = machine
    }
}

/// A pool's totals taken once a second, for the baseline of a last stage (the
/// pool in the window before the stage began).
struct PoolSnapshot {
    var at: Double
    /// Every worker's totals (what a binary rollout's baseline reads).
    var sample: StageSample
    /// The same split by the runtime and rules versions that made them, summed
    /// over the pool's workers (what runtime and rules baselines read).
    var byVersion: [VersionCounts] = []
}

/// A slot's artifact kind, as the key of what it was last given.
struct SlotArtifact: Hashable {
    var kind: ArtifactKind
    var pool: String
    var slot: Int
}

extension Supervisor {
    /// Wall-clock seconds: rollouts are stored and resumed after a restart.
    static func wallClock() -> Double { Date().timeIntervalSince1970 }

    // MARK: - What the feed says (on the queue)

    /// Takes in the running rollouts and active versions the replica holds (at start,
    /// before the pools: each slot starts on its version with or without the control store).
    func loadStages(_ contents: ReplicaContents) {
        stageRunner.stages.activeVersions = [:]
        for active in contents.activeVersions {
            if let version = active.version { stageRunner.stages.activeVersions[active.kind, default: [:]][active.pool] = version }
        }
        reloadOverrides()
        replicaFeed.rollouts = [:]
        for copy in contents.rollouts { takeRollout(copy) }
        stageRunner.stages.reported = Set(((try? replica.stageReports()) ?? [:]).keys)
    }

    /// Applies the stage rows of a feed update (already in the replica): rollouts
    /// that moved, ended or began, and active versions; then ships what changed and
    /// acknowledges new stages.
    func applyStages(_ update: ReplicaUpdate) {
        guard update.changesStages else { return }
        if update.isFullCopy {
            stageRunner.stages.activeVersions = [:]
            let kept = Set(update.rollouts.map(\.id))
            replicaFeed.rollouts = replicaFeed.rollouts.filter { kept.contains($0.value.id) }
        }
        for active in update.activeVersions {
            stageRunner.stages.activeVersions[active.kind, default: [:]][active.pool] = active.version
        }
        for id in update.endedRollouts {
            if let kind = replicaFeed.rollouts.first(where: { $0.value.id == id })?.key {
                logger.info("rollout ended", metadata: ["id": "\(id)", "kind": "\(kind)"])
                replicaFeed.rollouts[kind] = nil
            }
        }
        for copy in update.rollouts { takeRollout(copy) }
        reconcileSlots()
        acknowledgeStages()
    }

    /// Keeps the driver's latest machine of a running rollout (the host's measurement
    /// of its window stays when it is the same rollout).
    private func takeRollout(_ copy: ReplicaRollout) {
        guard let machine = try? JSONDecoder().decode(RolloutMachine.self, from: copy.state) else {
            logger.error("a running rollout cannot be read; its slots keep their versions", metadata: ["id": "\(copy.id)"])
            return
        }
        guard !machine.state.isFinished else {
            replicaFeed.rollouts[copy.kind] = nil
            return
        }
        // While this host is frozen, a stage that would put the new version on more
        // slots waits (the replica keeps it; an unfreeze takes it); a rollback, an
        // abort or a narrower stage is taken at once.
        if stageRunner.stages.overrides.isFrozen, widens(machine, over: replicaFeed.rollouts[copy.kind].flatMap { $0.id == copy.id ? $0.machine : nil }) {
            logger.warning("host frozen: a rollout stage that widens the new version waits", metadata: ["id": "\(copy.id)"])
            return
        }
        if let known = replicaFeed.rollouts[copy.kind], known.id == copy.id {
            known.machine = machine
        } else {
            replicaFeed.rollouts[copy.kind] = ActiveRollout(id: copy.id, machine: machine)
        }
    }

    /// Whether `machine` puts its new version on more of this host's slots than `known`
    /// (nil: a rollout the host has not followed yet, on no slot).
    func widens(_ machine: RolloutMachine, over known: RolloutMachine?) -> Bool {
        func count(_ machine: RolloutMachine?) -> Int {
            guard let machine else { return 0 }
            var slots = 0
            for (name, pool) in table.pools {
                for slot in pool.slots.indices
                where machine.version(forPool: name, slot: slot, host: configuration.hostName) == machine.targetVersion { slots += 1 }
            }
            return slots
        }
        return count(machine) > count(known)
    }

    // MARK: - Versions per slot

    /// The version break glass pinned `kind` to on this host, or nil. The one place
    /// the stage runner reads the pins: the replica's overrides, as last loaded.
    func hostPinnedVersion(_ kind: ArtifactKind) -> Int? {
        stageRunner.stages.overrides.pinnedVersion(of: kind)
    }

    /// Loads the replica's overrides into the stage runner (on the queue). A replica
    /// that cannot be read keeps the last ones loaded: an override holds until cleared.
    func reloadOverrides() {
        do {
            stageRunner.stages.overrides = try replica.overrides()
        } catch {
            logger.error("cannot read the break-glass overrides from the replica; keeping the last ones", metadata: ["error": "\(error)"])
        }
    }

    /// Takes the running rollouts the replica holds again (after an unfreeze: the
    /// stages the freeze held back), then ships and acknowledges what changed.
    func retakeRollouts() {
        guard let contents = try? replica.contents() else { return }
        for copy in contents.rollouts { takeRollout(copy) }
        reconcileSlots()
        acknowledgeStages()
    }

    /// The artifact version a slot of a pool should run now: the pin of a break-glass
    /// rollback, else the local guard's when it holds the slot back, else the
    /// rollout's when one covers the slot, else the pool's active version, else 0.
    func desiredVersion(_ kind: ArtifactKind, pool: String, slot: Int, pinned: Int?? = nil) -> Int {
        if let pinned = pinned ?? hostPinnedVersion(kind) {
            // A policy version is one cohort's: a pin to it holds that cohort's pools,
            // and the others stay on their own active policies (version 0, the
            // cohort files, holds every pool).
            if kind == .policy, pinned > 0, policy(version: pinned)?.cohort != pool {
                return stageRunner.stages.activeVersions[kind]?[pool] ?? 0
            }
            return pinned
        }
        // The local guard's hold wins over the rollout: it put the slot back, and the
        // driver may not have heard yet.
        if let held = stageRunner.localGuard.heldVersion(kind: kind, pool: pool, slot: slot) { return held }
        // A fleet host cut off past the deadline runs what last completed: a stage it
        // cannot confirm may have been rejected meanwhile.
        if stageRunner.stagesSuspendedSince != nil, let rollout = replicaFeed.rollouts[kind],
           rollout.machine.version(forPool: pool, slot: slot, host: configuration.hostName) != nil {
            return rollout.machine.previousVersion
        }
        if let rollout = replicaFeed.rollouts[kind],
           let version = rollout.machine.version(forPool: pool, slot: slot, host: configuration.hostName) { return version }
        return stageRunner.stages.activeVersions[kind]?[pool] ?? 0
    }

    /// An artifact's content: version 0 is what ships with this build; others come
    /// from the replica, or (a version the replica never got) the control store.
    func artifactContent(_ kind: ArtifactKind, version: Int) -> String? {
        if version == 0 {
            switch kind {
            case .runtime: return DefaultRuntime.source
            case .rules: return #"{"rules":[],"rulesets":{}}"#
            case .binary: return configuration.workerExecutable
            // The cohort file's own policy, which every worker is configured with.
            case .policy: return ""
            }
        }
        if let content = (try? replica.artifactContent(kind: kind, version: version)) ?? nil { return content }
        return (try? store.artifact(kind: kind, version: version))??.content
    }

    /// Policy `version` as parsed (once per version), nil for version 0 (the cohort
    /// files' own) or one that cannot be read.
    func policy(version: Int) -> CohortPolicy? {
        guard version > 0 else { return nil }
        if let known = stageRunner.stages.policies[version] { return known }
        let parsed = artifactContent(.policy, version: version).flatMap { try? CohortPolicy.parse($0) }
        // A version not in the replica yet is looked up again next time.
        if parsed != nil { stageRunner.stages.policies[version] = parsed }
        return parsed
    }

    /// A pool's cohort under each policy its slots are to run: the largest request
    /// body any of them takes (what the ingress lets through to the pool).
    func largestBodyBytes(of pool: PoolState) -> Int {
        let name = pool.cohort.name
        return pool.slots.indices.map { slot in
            policy(version: desiredVersion(.policy, pool: name, slot: slot))?.limits.maxBodyBytes ?? pool.cohort.limits.maxBodyBytes
        }.max() ?? pool.cohort.limits.maxBodyBytes
    }

    /// Sends a worker the runtime, rules and policy its slot should run.
    func sendArtifacts(to handle: WorkerHandle) {
        for kind in [ArtifactKind.runtime, .rules, .policy] {
            let version = desiredVersion(kind, pool: handle.pool, slot: handle.slot)
            // A new worker runs its cohort file's policy: version 0 needs no message
            // (and a worker built before policies could not read one).
            if kind == .policy, version == 0 {
                stageRunner.stages.given[SlotArtifact(kind: kind, pool: handle.pool, slot: handle.slot)] = version
                continue
            }
            guard let content = artifactContent(kind, version: version) else {
                logger.error("artifact version missing from the replica and the store", metadata: ["kind": "\(kind)", "version": "\(version)"])
                continue
            }
            handle.send(.setArtifact(kind: kind, version: version, content: content))
            stageRunner.stages.given[SlotArtifact(kind: kind, pool: handle.pool, slot: handle.slot)] = version
        }
        // The binary a worker runs is chosen when it is spawned; an adopted worker
        // is taken to run its slot's (as before the split: adoption replaces nothing).
        let binary = SlotArtifact(kind: .binary, pool: handle.pool, slot: handle.slot)
        if stageRunner.stages.given[binary] == nil {
            stageRunner.stages.given[binary] = desiredVersion(.binary, pool: handle.pool, slot: handle.slot)
        }
    }

    /// Ships every slot whose desired version differs from what it was last given,
    /// and only those.
    func reconcileSlots() {
        var policiesChanged = false
        for kind in ArtifactKind.allCases {
            let pinned = hostPinnedVersion(kind)
            for name in table.pools.keys.sorted() {
                guard let pool = table.pools[name] else { continue }
                for slot in pool.slots.indices {
                    let version = desiredVersion(kind, pool: name, slot: slot, pinned: .some(pinned))
                    if stageRunner.stages.given[SlotArtifact(kind: kind, pool: name, slot: slot)] != version {
                        give(kind, version: version, pool: pool, slot: slot)
                        if kind == .policy { policiesChanged = true }
                    }
                }
            }
        }
        // The ingress's body limit per pool follows the policies its slots run.
        if policiesChanged { writeRoutes() }
    }

    /// Puts `version` of `kind` on these slots of a pool; a slot the local guard
    /// holds back gets the guard's version instead.
    func ship(_ kind: ArtifactKind, version: Int, pool name: String, slots: [Int]) {
        guard let pool = table.pools[name] else { return }
        for slot in slots where pool.slots.indices.contains(slot) {
            give(kind, version: stageRunner.localGuard.heldVersion(kind: kind, pool: name, slot: slot) ?? version, pool: pool, slot: slot)
        }
    }

    /// The binary version a slot's next worker runs: its desired one, unless this
    /// host cannot run that binary (missing, or another build at its path): then the
    /// local guard fails the stage on this host, saying why, and holds the slot on
    /// the last completed version.
    func usableBinaryVersion(pool: String, slot: Int) -> Int {
        let version = desiredVersion(.binary, pool: pool, slot: slot)
        guard version > 0, let content = artifactContent(.binary, version: version) else { return version }
        let binary = BinaryArtifact(content: content)
        let problem: String?
        if let checked = stageRunner.stages.binaryChecks[version] {
            problem = checked
        } else {
            problem = binary.problem()
            stageRunner.stages.binaryChecks[version] = problem
        }
        guard let problem else { return version }
        stageRunner.localGuard.update(guardAssignments())
        let detail = configuration.hostName.map { "on host \($0): \(problem)" } ?? problem
        performGuard(stageRunner.localGuard.binaryUnusable(detail: detail, now: Self.wallClock()))
        return desiredVersion(.binary, pool: pool, slot: slot)
    }

    /// Gives one slot `version`: a new worker for a binary, a message otherwise.
    private func give(_ kind: ArtifactKind, version: Int, pool: PoolState, slot: Int) {
        let key = SlotArtifact(kind: kind, pool: pool.cohort.name, slot: slot)
        if kind == .binary {
            // A slot already on the binary keeps its worker (and its connections).
            if stageRunner.stages.given[key] == version, pool.slots[slot] != nil { return }
            // A binary this host cannot run fails its stage here (the guard then holds the slot).
            guard usableBinaryVersion(pool: pool.cohort.name, slot: slot) == version else { return }
            stageRunner.stages.given[key] = version
            // A slot with no worker (restarting) gets the version when it is spawned.
            if pool.slots[slot] != nil { replaceWorker(pool: pool, slot: slot) }
        } else if let worker = pool.slots[slot] {
            guard let content = artifactContent(kind, version: version) else {
                logger.error("artifact version missing from the replica and the store", metadata: ["kind": "\(kind)", "version": "\(version)"])
                return
            }
            worker.send(.setArtifact(kind: kind, version: version, content: content))
            stageRunner.stages.given[key] = version
        }
    }

    /// Starts a new worker in a slot (with the slot's desired binary); the old one
    /// keeps serving until the new one is ready, then drains.
    func replaceWorker(pool: PoolState, slot: Int) {
        if let old = pool.slots[slot], !old.exited {
            old.draining = true
            pool.leaving.append(old)
            pool.awaitingReplacement[slot] = old
        }
        pool.slots[slot] = nil
        spawnWorker(pool: pool, slot: slot)
    }

    // MARK: - Stages (on the queue)

    /// Acknowledges each rollout's current stage once its version is on the slots: the
    /// stage's window starts now. Again when the driver restarted the window (a new
    /// bake start for the same stage), and after a supervisor restart.
    func acknowledgeStages() {
        guard !table.pools.isEmpty else { return }
        for rollout in replicaFeed.rollouts.values.sorted(by: { $0.id < $1.id }) {
            guard let stage = rollout.machine.currentStage else { continue }
            let bake = rollout.machine.bakeStartedAt
            if let acknowledged = rollout.acknowledged, acknowledged.stage == stage, acknowledged.bakeStartedAt == bake { continue }
            startWindow(for: rollout)
            rollout.acknowledged = (stage, bake)
            rollout.acknowledgedAt = Self.wallClock()
            logger.info("rollout stage acknowledged", metadata: [
                "id": "\(rollout.id)", "stage": "\(rollout.machine.stages[stage].name)", "version": "\(rollout.machine.targetVersion)",
            ])
        }
    }

    /// Every ~200 ms: the pools' snapshots, then one `StageReport` per running rollout
    /// into the replica (what the driver judges the stage on), and the reports of
    /// rollouts that ended removed.
    func runStages() {
        let now = Self.wallClock()
        recordPoolSnapshots(now: now)
        acknowledgeStages()
        var live = Set<Int>()
        for rollout in replicaFeed.rollouts.values.sorted(by: { $0.id < $1.id }) {
            live.insert(rollout.id)
            guard let report = stageReport(rollout, now: now) else { continue }
            do {
                try replica.saveStageReport(rollout: rollout.id, report: try JSONEncoder().encode(report))
                stageRunner.stages.reported.insert(rollout.id)
                stageRunner.stages.reportProblem = nil
            } catch {
                let text = "\(error)"
                if stageRunner.stages.reportProblem != text {
                    stageRunner.stages.reportProblem = text
                    logger.error("cannot write the stage report; the rollout does not advance", metadata: [
                        "id": "\(rollout.id)", "error": "\(error)",
                    ])
                }
            }
        }
        for id in stageRunner.stages.reported.subtracting(live).sorted() {
            if (try? replica.removeStageReport(rollout: id)) != nil { stageRunner.stages.reported.remove(id) }
        }
        runDeploymentReports(now: now)
    }

    /// What the host measured of a rollout's acknowledged stage, or nil before any.
    func stageReport(_ rollout: ActiveRollout, now: Double) -> StageReport? {
        let machine = rollout.machine
        guard let index = rollout.acknowledged?.stage, machine.stages.indices.contains(index) else {
            // A guard trip is reported even so: a rollback never waits.
            return rollout.guardTrip.map { trip in
                StageReport(rollout: rollout.id, stage: machine.currentStage ?? 0, version: machine.targetVersion,
                            acknowledgedAt: rollout.acknowledgedAt, measuredAt: now, sample: StageSample(), baseline: nil, guardTrip: trip)
            }
        }
        let stage = machine.stages[index]
        // The stage is judged on what its version did, the baseline on what
        // the previous version did: counts of any other version (one rolled
        // back just before, reported late) belong to neither.
        var sample = measure(pool: stage.pool, slots: stageSlots(machine, index), rollout: rollout, version: machine.targetVersion)
        sample.crashes = rollout.windowCrashes
        sample.crashesLeftOut = rollout.windowCrashesLeftOut
        let previous = machine.previousVersion
        if stage.hosts != nil {
            return StageReport(
                rollout: rollout.id, stage: index, version: machine.targetVersion, acknowledgedAt: rollout.acknowledgedAt,
                measuredAt: now, sample: sample, baseline: fleetBaseline(rollout, stage: index, now: now), guardTrip: rollout.guardTrip)
        }
        let baseline = RolloutPlan.baseline(forStage: index, in: machine.stages).map { source -> StageSample in
            switch source {
            case .concurrent(let pool, let slots):
                return measure(pool: pool, slots: slots, rollout: rollout, version: previous)
            case .beforeStage(let pool, _):
                return poolWindow(pool: pool, endingAt: machine.bakeStartedAt ?? now, seconds: stage.gate.bakeSeconds,
                                  kind: machine.kind, version: previous)
            }
        }
        return StageReport(rollout: rollout.id, stage: index, version: machine.targetVersion, acknowledgedAt: rollout.acknowledgedAt,
                           measuredAt: now, sample: sample, baseline: baseline, guardTrip: rollout.guardTrip)
    }

    /// In a fleet, every tick: a host whose feed is cut off, or whose reports do not
    /// reach the leader, for `stageConfirmationDeadline` seconds puts every slot a
    /// rollout covers back on the rollout's previous version (the last completed), on
    /// its own; once both work again (`StageConfirmation`) it follows the fleet's
    /// machines as they are now (a rollback, a pause, a later stage). Level-triggered:
    /// the desired version is recomputed from the state, never replayed.
    func checkStageConfirmation(now: Double) {
        guard configuration.hostName != nil else { return }
        let failing = [replicaFeed.follower.reader?.cutOffSince?.timeIntervalSince1970, stageRunner.reportsFailingSince]
        let cutOff = failing.compactMap { $0 }.min()
        let wasSuspended = stageRunner.stagesSuspendedSince != nil
        let suspend = StageConfirmation.suspended(
            wasSuspended, cutOffSince: failing, now: now, deadline: configuration.stageConfirmationDeadline)
        guard suspend != wasSuspended else { return }
        if suspend {
            stageRunner.stagesSuspendedSince = now
            let running = replicaFeed.rollouts.values.map { "\($0.id)" }.sorted().joined(separator: ",")
            logger.log(level: running.isEmpty ? .info : .error, "cut off from the fleet past the deadline: back on the last completed versions", metadata: [
                "cut_off_s": "\(Int(now - (cutOff ?? now)))", "deadline_s": "\(configuration.stageConfirmationDeadline)",
                "rollouts": "\(running.isEmpty ? "-" : running)",
            ])
        } else {
            stageRunner.stagesSuspendedSince = nil
            logger.info("in touch with the fleet again: following its rollouts as they stand")
        }
        reconcileSlots()
    }

    /// In a fleet: whether this host's health reports reach the leader (thread-safe).
    public func leaderReports(failingSince: Date?) {
        queue.async { [self] in
            stageRunner.reportsFailingSince = failingSince?.timeIntervalSince1970
        }
    }

    /// The slots of this host that stage `index` puts its version on: the stage's
    /// own on one machine; in a fleet, those of this host whose first covering stage
    /// it is (none when the stage names other hosts).
    func stageSlots(_ machine: RolloutMachine, _ index: Int) -> [Int] {
        let stage = machine.stages[index]
        guard stage.hosts != nil else { return stage.slots }
        return RolloutPlan.slots(
            ofStage: index, in: machine.stages, pool: stage.pool, workers: table.pools[stage.pool]?.slots.count ?? 0,
            host: configuration.hostName)
    }

    /// A fleet stage's baseline on this host: while a later stage of the pool is to
    /// come, the old version on this host's slots it has not reached, over the same
    /// window; for the pool's last stage, this host's stage slots before it (nil
    /// when the stage does not name this host).
    func fleetBaseline(_ rollout: ActiveRollout, stage index: Int, now: Double) -> StageSample? {
        let machine = rollout.machine
        let stage = machine.stages[index]
        let workers = table.pools[stage.pool]?.slots.count ?? 0
        if RolloutPlan.fleetBaselineIsConcurrent(forStage: index, in: machine.stages) {
            let old = RolloutPlan.slotsAfter(stage: index, in: machine.stages, pool: stage.pool, workers: workers, host: configuration.hostName)
            return measure(pool: stage.pool, slots: old, rollout: rollout, version: machine.previousVersion)
        }
        guard stageSlots(machine, index).isEmpty == false else { return nil }
        return poolWindow(pool: stage.pool, endingAt: machine.bakeStartedAt ?? now, seconds: stage.gate.bakeSeconds,
                          kind: machine.kind, version: machine.previousVersion)
    }

    /// What these slots served under `version` of the rollout's kind since the
    /// stage's window began.
    func measure(pool name: String, slots: [Int], rollout: ActiveRollout, version: Int) -> StageSample {
        var sample = StageSample()
        guard let pool = table.pools[name] else { return sample }
        for slot in slots where pool.slots.indices.contains(slot) {
            guard let worker = pool.slots[slot], !worker.exited else { continue }
            sample.add(StageSample.window(
                from: rollout.windowBase[worker.pid], to: worker.stats, kind: rollout.machine.kind, version: version))
        }
        return sample
    }

    /// Once a second, each pool's totals (for the baseline before a last stage).
    func recordPoolSnapshots(now: Double) {
        if let last = stageRunner.poolSnapshots.values.first?.last, now - last.at < 1 { return }
        for (name, pool) in table.pools {
            var sample = StageSample()
            var byVersion: [VersionCounts] = []
            for worker in pool.allWorkers {
                sample.add(StageSample(VersionCounts(totalsOf: worker.stats)))
                for entry in worker.stats.byVersion ?? [] {
                    if let index = byVersion.firstIndex(where: { $0.sameVersions(as: entry) }) {
                        byVersion[index].add(entry)
                    } else {
                        byVersion.append(entry)
                    }
                }
            }
            var list = stageRunner.poolSnapshots[name] ?? []
            list.append(PoolSnapshot(at: now, sample: sample, byVersion: byVersion))
            if list.count > 300 { list.removeFirst(list.count - 300) }
            stageRunner.poolSnapshots[name] = list
            // The status page's chart: the pool's monotonic totals once a second.
            let total = table.totals[name] ?? PoolTotals()
            var points = stageRunner.pageHistory[name] ?? []
            points.append((at: now, requests: total.requests, errors: total.errors.values.reduce(0, +)))
            if points.count > 300 { points.removeFirst(points.count - 300) }
            stageRunner.pageHistory[name] = points
        }
    }

    /// What a pool served under `version` of `kind` in the `seconds` before `end`,
    /// from the snapshots. Worker restarts make cumulative sums go down; such a
    /// window reads as empty.
    func poolWindow(pool: String, endingAt end: Double, seconds: Double, kind: ArtifactKind, version: Int) -> StageSample {
        guard let list = stageRunner.poolSnapshots[pool], let last = list.last(where: { $0.at <= end }),
              let first = list.last(where: { $0.at <= end - seconds }) ?? list.first
        else { return StageSample() }
        if kind.isCountedPerVersion {
            return StageSample.window(from: first.byVersion, to: last.byVersion, kind: kind, version: version)
        }
        var sample = StageSample(
            requests: max(0, last.sample.requests - first.sample.requests),
            platformErrors: max(0, last.sample.platformErrors - first.sample.platformErrors),
            scriptErrors: max(0, last.sample.scriptErrors - first.sample.scriptErrors))
        for (signature, count) in last.sample.signatures {
            let delta = count - (first.sample.signatures[signature] ?? 0)
            if delta > 0 { sample.signatures[signature] = delta }
        }
        if let later = last.sample.latency, let earlier = first.sample.latency { sample.latency = later.since(earlier) }
        return sample
    }

    /// Starts a new measurement window: every worker's stats now are its base.
    func startWindow(for rollout: ActiveRollout) {
        rollout.windowBase = [:]
        rollout.windowCrashes = 0
        rollout.windowCrashesLeftOut = [:]
        for pool in table.pools.values {
            for worker in pool.allWorkers { rollout.windowBase[worker.pid] = worker.stats }
        }
    }

    /// The state in one word, as the store's status column keeps it.
    static func statusName(_ state: RolloutMachine.State) -> String {
        RolloutDriver.statusName(state)
    }
}

/// The host's stage runner's own state, beside `Supervisor.rollouts`. Touched only on
/// the supervisor queue.
struct StageRunnerState {
    /// Each pool's active version of each kind, as the feed (or the replica) says.
    var activeVersions: [ArtifactKind: [String: Int]] = [:]
    /// The version each slot was last given, so a slot is shipped only when its
    /// desired version changes.
    var given: [SlotArtifact: Int] = [:]
    /// The host's break-glass overrides, as last loaded from the replica.
    var overrides = HostOverrides()
    /// Rollouts whose report is in the replica (removed once they end).
    var reported: Set<Int> = []
    /// Binary versions checked on this host: why it cannot run one, nil when it can
    /// (a file is hashed once per version).
    var binaryChecks: [Int: String?] = [:]
    /// Policy versions parsed so far (an artifact version never changes).
    var policies: [Int: CohortPolicy] = [:]
    /// The last failure to write a report, logged once.
    var reportProblem: String?
}

/// The stage runner's and the local guard's state, on the supervisor's queue.
struct StageRunner {
    /// The active versions and what each slot was given.
    var stages = StageRunnerState()
    /// The host's own protection of the slots running a rollout's new version: it
    /// acts on what this host observes, without the rollout's driver.
    var localGuard = LocalGuard()
    /// The host's windows on scripts' gradual deployments.
    var deployments = DeploymentWindows()
    /// Pool totals once a second (baselines of last stages).
    var poolSnapshots: [String: [PoolSnapshot]] = [:]
    /// Per pool, (time, requests, errors) totals once a second, for the status page.
    var pageHistory: [String: [(at: Double, requests: Int, errors: Int)]] = [:]
    /// Ticks since start (stages are reported every tenth).
    var ticks = 0
    /// In a fleet: since when (wall clock) this host's health reports have not reached
    /// the leader, nil while they do.
    var reportsFailingSince: Double?
    /// In a fleet: since when this host runs the last completed versions instead of
    /// its rollouts' stages, because it could not confirm them past the deadline.
    var stagesSuspendedSince: Double?
}
