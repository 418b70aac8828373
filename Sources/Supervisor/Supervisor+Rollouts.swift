#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Rollout
import Store

/// A rollout in progress: the engine's state machine plus what the I/O layer needs
/// to measure its stage windows.
final class ActiveRollout {
    let id: Int
    var machine: RolloutMachine
    /// Each worker's stats when the current stage's window began (by pid).
    var windowBase: [pid_t: WorkerStats] = [:]
    /// Worker crashes in the current stage's slots since the window began, but
    /// for those a customer script was blamed for.
    var windowCrashes = 0
    /// Crashes in the stage's slots since the window began that a customer script
    /// was blamed for, by script: left out of the gate's count, shown in its verdict.
    var windowCrashesLeftOut: [String: Int] = [:]
    /// The last status written to the store, to save only on transitions.
    var savedStatus = ""

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

extension Supervisor {
    /// What the status page shows: the host, each pool's request and error totals
    /// once a second over the last five minutes, and the recent rollouts.
    public func pageData() -> (HostStatus, [String: [(at: Double, requests: Int, errors: Int)]], [(id: Int, status: RolloutStatus)]) {
        let (status, history, live) = queue.sync {
            (self.status(), pageHistory, rollouts.values.map { (id: $0.id, status: $0.machine.status) })
        }
        var list = live
        for record in (try? store.rollouts(limit: 5)) ?? [] where !list.contains(where: { $0.id == record.id }) {
            if let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) {
                list.append((id: record.id, status: machine.status))
            }
        }
        return (status, history, list.sorted { $0.id > $1.id })
    }

    /// Wall-clock seconds: rollouts are stored and resumed after a restart.
    static func wallClock() -> Double { Date().timeIntervalSince1970 }

    // MARK: - Versions per slot

    /// The artifact version a slot of a pool should run now: the local guard's when
    /// it holds the slot back, else the rollout's when one covers the slot, else the pin of a break-glass rollback, else the pool's current.
    func desiredVersion(_ kind: ArtifactKind, pool: String, slot: Int) -> Int {
        // The local guard's hold wins over the rollout: it put the slot back, and the
        // driver may not have heard yet.
        if let held = localGuard.heldVersion(kind: kind, pool: pool, slot: slot) { return held }
        if let rollout = rollouts[kind], let version = rollout.machine.version(forPool: pool, slot: slot) { return version }
        if let pinned = (try? store.pinnedVersion(of: kind)) ?? nil { return pinned }
        return ((try? store.activeVersion(of: kind, inPool: pool)) ?? nil) ?? 0
    }

    /// An artifact's content; version 0 is what ships with this build.
    func artifactContent(_ kind: ArtifactKind, version: Int) -> String? {
        if version == 0 {
            switch kind {
            case .runtime: return DefaultRuntime.source
            case .rules: return #"{"rules":[],"rulesets":{}}"#
            case .binary: return configuration.workerExecutable
            }
        }
        return (try? store.artifact(kind: kind, version: version))??.content
    }

    /// Sends a worker the runtime and rules its slot should run.
    func sendArtifacts(to handle: WorkerHandle) {
        for kind in [ArtifactKind.runtime, .rules] {
            let version = desiredVersion(kind, pool: handle.pool, slot: handle.slot)
            guard let content = artifactContent(kind, version: version) else {
                logger.error("artifact version missing from the store", metadata: ["kind": "\(kind)", "version": "\(version)"])
                continue
            }
            handle.send(.setArtifact(kind: kind, version: version, content: content))
        }
    }

    // MARK: - Starting

    /// Validates an artifact, stores it as the next version of its kind and starts
    /// rolling it out; returns the rollout id. A start that is refused (invalid,
    /// frozen, pinned, one already running) stores nothing: every check comes before
    /// the artifact is written.
    public func startRollout(kind: ArtifactKind, content: String, actor: String) -> Result<Int, ControlError> {
        if let refusal = validateArtifact(kind, content: content) { return .failure(refusal) }
        return queue.sync {
            do {
                if let refusal = try startRefusal(kind) { return .failure(refusal) }
                let cohorts = pools.values.map(\.cohort)
                let first = cohorts.min { $0.order < $1.order }?.name ?? ""
                let previous = desiredVersion(kind, pool: first, slot: 0)
                // The machine is made and started before the artifact is stored, with
                // the version the store will hand out next (the supervisor is its only
                // writer of artifacts): a plan the engine refuses stores nothing either.
                let next = ((try store.latestArtifact(kind: kind))?.version ?? 0) + 1
                var machine = try RolloutMachine(
                    kind: kind, targetVersion: next, previousVersion: previous,
                    stages: RolloutPlan.stages(cohorts: cohorts), now: Self.wallClock(), frozen: false)
                let actions = try machine.start(now: Self.wallClock(), by: actor)
                let artifact = try store.putArtifact(kind: kind, content: content, actor: actor)
                guard artifact.version == next else {
                    return .failure(ControlError(.store, "the store gave the \(kind) version \(artifact.version), not \(next) as expected; start the rollout again"))
                }
                let record = try store.createRollout(
                    kind: kind, version: artifact.version, fromVersion: previous, status: Self.statusName(machine.state),
                    state: try JSONEncoder().encode(machine), actor: actor)
                let rollout = ActiveRollout(id: record.id, machine: machine)
                rollout.savedStatus = Self.statusName(machine.state)
                rollouts[kind] = rollout
                logger.info("rollout started", metadata: [
                    "id": "\(record.id)", "kind": "\(kind)", "version": "\(artifact.version)", "from": "\(previous)",
                ])
                perform(actions, for: rollout)
                return .success(record.id)
            } catch let error as RolloutError {
                return .failure(ControlError(.rollout, "\(error)"))
            } catch {
                return .failure(Self.storeFailure(error))
            }
        }
    }

    /// Why a rollout of `kind` cannot start now, or nil (on the queue).
    func startRefusal(_ kind: ArtifactKind) throws -> ControlError? {
        if let running = rollouts[kind] {
            return ControlError(.rolloutRunning, "rollout \(running.id) of the \(kind) is still running; one per kind at a time")
        }
        if let stored = try store.runningRollout(kind: kind) {
            return ControlError(.rolloutRunning, "rollout \(stored.id) of the \(kind) is unfinished in the store (\(stored.status)); one per kind at a time")
        }
        if try store.isFrozen() {
            return ControlError(.frozen, "rollouts are frozen (break-glass freeze); unfreeze first")
        }
        // A pin is the operator's word that the kind stays where it is: only the
        // operator lifts it (no rollout moves on from it silently).
        if let pinned = try store.pinnedVersion(of: kind) {
            return ControlError(.pinned, "the \(kind) is pinned to version \(pinned) by break glass; nothing was stored. "
                    + "Release it first with: bulkhead break-glass unpin --kind \(kind.rawValue)")
        }
        return nil
    }

    /// The producer's checks, before anything ships.
    func validateArtifact(_ kind: ArtifactKind, content: String) -> ControlError? {
        // Fault injection for the test that workers still refuse what slipped past.
        if ProcessInfo.processInfo.environment["BULKHEAD_FAULT_SKIP_PRODUCER_VALIDATION"] == "1" { return nil }
        switch kind {
        case .rules:
            if case .failure(let error) = RulesValidator.validate(Array(content.utf8)) {
                return ControlError(.invalidRules, "\(error)")
            }
            return nil
        case .runtime:
            return ArtifactChecker(executable: configuration.workerExecutable).checkRuntime(content)
        case .binary:
            return ArtifactChecker(executable: configuration.workerExecutable).probeBinary(content)
        }
    }

    /// Reads the rollouts the store says are running (after a restart), before any
    /// worker is attached, so every slot gets the version its rollout gave it.
    func loadRollouts() {
        for kind in ArtifactKind.allCases {
            guard let record = (try? store.runningRollout(kind: kind)) ?? nil else { continue }
            guard let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) else {
                logger.error("a stored rollout cannot be read; it is held", metadata: ["id": "\(record.id)"])
                continue
            }
            rollouts[kind] = ActiveRollout(id: record.id, machine: machine)
        }
    }

    /// Resumes the rollouts `loadRollouts` found, now that the pools run.
    func resumeRollouts() {
        for rollout in rollouts.values {
            let actions = rollout.machine.restored(now: Self.wallClock())
            logger.info("rollout resumed after a supervisor restart", metadata: [
                "id": "\(rollout.id)", "kind": "\(rollout.machine.kind)", "state": "\(rollout.machine.state)",
            ])
            perform(actions, for: rollout)
            save(rollout, force: true)
        }
    }

    /// A break-glass rollback was written to the store: drop any rollout of the kind
    /// and put the pinned version on every worker now.
    func applyPin(_ kind: ArtifactKind, version: Int) {
        rollouts[kind] = nil
        logger.warning("break-glass rollback: every pool pinned", metadata: ["kind": "\(kind)", "version": "\(version)"])
        for pool in pools.values {
            for slot in pool.slots.indices {
                if kind == .binary {
                    replaceWorker(pool: pool, slot: slot)
                } else if let worker = pool.slots[slot], let content = artifactContent(kind, version: version) {
                    worker.send(.setArtifact(kind: kind, version: version, content: content))
                }
            }
        }
    }

    // MARK: - Operator commands

    /// Pause, resume, abort or promote a rollout.
    public func operate(rollout id: Int, command: String, actor: String) -> Result<RolloutStatus, ControlError> {
        queue.sync {
            guard let rollout = rollouts.values.first(where: { $0.id == id }) else {
                if let record = (try? store.rollout(id: id)) ?? nil {
                    return .failure(ControlError(.rolloutEnded, "rollout \(id) has ended (\(record.status))"))
                }
                return .failure(ControlError(.notFound, "no rollout \(id)"))
            }
            let now = Self.wallClock()
            do {
                let actions: [RolloutAction]
                switch command {
                case "pause": actions = try rollout.machine.pause(now: now, by: actor)
                case "resume": actions = try rollout.machine.resume(now: now, by: actor)
                case "abort": actions = try rollout.machine.abort(now: now, by: actor)
                case "promote": actions = try rollout.machine.promote(now: now, by: actor)
                default: return .failure(ControlError(.invalid, "unknown rollout command '\(command)'"))
                }
                perform(actions, for: rollout)
                save(rollout, force: true)
                return .success(rollout.machine.status)
            } catch {
                return .failure(ControlError(.rollout, "\(error)"))
            }
        }
    }

    /// A rollout's status, running or ended.
    public func rolloutStatus(id: Int) -> Result<RolloutStatus, ControlError> {
        if let live = queue.sync(execute: { rollouts.values.first { $0.id == id }?.machine.status }) { return .success(live) }
        guard let record = (try? store.rollout(id: id)) ?? nil else {
            return .failure(ControlError(.notFound, "no rollout \(id)"))
        }
        guard let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) else {
            return .failure(ControlError(.store, "rollout \(id) cannot be read"))
        }
        return .success(machine.status)
    }

    // MARK: - Driving (on the queue)

    /// Every ~200 ms: measure each running rollout's stage and let its machine decide.
    func driveRollouts() {
        let now = Self.wallClock()
        recordPoolSnapshots(now: now)
        deliverGuardReports(now: now)
        // The freeze flag is read from the store (break glass may set it with the
        // supervisor down), so only while some rollout can be frozen.
        guard !rollouts.isEmpty else { return }
        let frozen = (try? store.isFrozen()) ?? false
        for rollout in rollouts.values {
            var actions = rollout.machine.setFrozen(frozen, now: now)
            if let index = rollout.machine.currentStage {
                let stage = rollout.machine.stages[index]
                // The stage is judged on what its version did, the baseline on what
                // the previous version did: counts of any other version (one rolled
                // back just before, reported late) belong to neither.
                var sample = measure(pool: stage.pool, slots: stage.slots, rollout: rollout, version: rollout.machine.targetVersion)
                sample.crashes = rollout.windowCrashes
                sample.crashesLeftOut = rollout.windowCrashesLeftOut
                let previous = rollout.machine.previousVersion
                let baseline = RolloutPlan.baseline(forStage: index, in: rollout.machine.stages).map { source -> StageSample in
                    switch source {
                    case .concurrent(let pool, let slots):
                        return measure(pool: pool, slots: slots, rollout: rollout, version: previous)
                    case .beforeStage(let pool, _):
                        return poolWindow(pool: pool, endingAt: rollout.machine.bakeStartedAt ?? now, seconds: stage.gate.bakeSeconds,
                                          kind: rollout.machine.kind, version: previous)
                    }
                }
                actions += rollout.machine.observe(stage: sample, baseline: baseline, now: now)
            }
            perform(actions, for: rollout)
            save(rollout)
        }
        rollouts = rollouts.filter { !$0.value.machine.state.isFinished }
    }

    /// What these slots served under `version` of the rollout's kind since the
    /// stage's window began.
    func measure(pool name: String, slots: [Int], rollout: ActiveRollout, version: Int) -> StageSample {
        var sample = StageSample()
        guard let pool = pools[name] else { return sample }
        for slot in slots where pool.slots.indices.contains(slot) {
            guard let worker = pool.slots[slot], !worker.exited else { continue }
            sample.add(StageSample.window(
                from: rollout.windowBase[worker.pid], to: worker.stats, kind: rollout.machine.kind, version: version))
        }
        return sample
    }

    /// Once a second, each pool's totals (for the baseline before a last stage).
    func recordPoolSnapshots(now: Double) {
        if let last = poolSnapshots.values.first?.last, now - last.at < 1 { return }
        for (name, pool) in pools {
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
            var list = poolSnapshots[name] ?? []
            list.append(PoolSnapshot(at: now, sample: sample, byVersion: byVersion))
            if list.count > 300 { list.removeFirst(list.count - 300) }
            poolSnapshots[name] = list
            // The status page's chart: the pool's monotonic totals once a second.
            let total = totals[name] ?? PoolTotals()
            var points = pageHistory[name] ?? []
            points.append((at: now, requests: total.requests, errors: total.errors.values.reduce(0, +)))
            if points.count > 300 { points.removeFirst(points.count - 300) }
            pageHistory[name] = points
        }
    }

    /// What a pool served under `version` of `kind` in the `seconds` before `end`,
    /// from the snapshots. Worker restarts make cumulative sums go down; such a
    /// window reads as empty.
    func poolWindow(pool: String, endingAt end: Double, seconds: Double, kind: ArtifactKind, version: Int) -> StageSample {
        guard let list = poolSnapshots[pool], let last = list.last(where: { $0.at <= end }),
              let first = list.last(where: { $0.at <= end - seconds }) ?? list.first
        else { return StageSample() }
        if kind != .binary {
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

    /// Carries out what the machine decided.
    func perform(_ actions: [RolloutAction], for rollout: ActiveRollout) {
        let kind = rollout.machine.kind
        for action in actions {
            switch action {
            case .apply(let index, let version):
                startWindow(for: rollout)
                ship(kind, version: version, to: rollout.machine.stages[index])
            case .resetWindow:
                startWindow(for: rollout)
            case .rollback(let version, let stages):
                logger.error("rollout failed; rolling back", metadata: [
                    "id": "\(rollout.id)", "kind": "\(kind)", "to": "\(version)",
                    "stages": "\(stages.map { rollout.machine.stages[$0].name })",
                    "by": "\(rollout.machine.decisions.last?.by ?? "")",
                    "reason": "\(rollout.machine.decisions.last?.message ?? "")",
                ])
                for index in stages { ship(kind, version: version, to: rollout.machine.stages[index]) }
            case .completed:
                for pool in pools.keys {
                    try? store.setActiveVersion(rollout.machine.targetVersion, of: kind, inPool: pool, actor: "rollout \(rollout.id)")
                }
                logger.info("rollout completed", metadata: ["id": "\(rollout.id)", "kind": "\(kind)", "version": "\(rollout.machine.targetVersion)"])
            case .paused(let reason):
                logger.warning("rollout paused", metadata: ["id": "\(rollout.id)", "reason": "\(reason)"])
            case .record(let decision):
                logger.info("rollout decision", metadata: ["id": "\(rollout.id)", "decision": "\(decision)"])
                _ = try? store.appendAudit(actor: "rollout \(rollout.id)", action: AuditAction("rollout.decision"),
                                           subject: "rollout/\(rollout.id)", detail: jsonText(decision))
            }
        }
    }

    /// Starts a new measurement window: every worker's stats now are its base.
    func startWindow(for rollout: ActiveRollout) {
        rollout.windowBase = [:]
        rollout.windowCrashes = 0
        rollout.windowCrashesLeftOut = [:]
        for pool in pools.values {
            for worker in pool.allWorkers { rollout.windowBase[worker.pid] = worker.stats }
        }
    }

    /// Puts `version` of `kind` on every slot of a stage.
    func ship(_ kind: ArtifactKind, version: Int, to stage: Stage) {
        ship(kind, version: version, pool: stage.pool, slots: stage.slots)
    }

    /// Puts `version` of `kind` on these slots of a pool; a slot the local guard
    /// holds back gets the guard's version instead.
    func ship(_ kind: ArtifactKind, version: Int, pool name: String, slots: [Int]) {
        guard let pool = pools[name] else { return }
        for slot in slots where pool.slots.indices.contains(slot) {
            let version = localGuard.heldVersion(kind: kind, pool: name, slot: slot) ?? version
            if kind == .binary {
                replaceWorker(pool: pool, slot: slot)
            } else if let worker = pool.slots[slot], let content = artifactContent(kind, version: version) {
                worker.send(.setArtifact(kind: kind, version: version, content: content))
            }
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

    /// The state in one word, as the store's status column keeps it.
    static func statusName(_ state: RolloutMachine.State) -> String {
        switch state {
        case .pending: "pending"
        case .running(let stage): "running stage \(stage)"
        case .paused(let stage, _): "paused at stage \(stage)"
        case .completed: "completed"
        case .rolledBack(let stage, _): "rolled back at stage \(stage)"
        case .aborted: "aborted"
        }
    }

    /// Writes the machine to the store when its state changed (or when forced).
    func save(_ rollout: ActiveRollout, force: Bool = false) {
        let status = Self.statusName(rollout.machine.state)
        guard force || status != rollout.savedStatus || rollout.machine.decisions.count != savedDecisions[rollout.id] else { return }
        do {
            _ = try store.updateRollout(
                id: rollout.id, status: status, state: try JSONEncoder().encode(rollout.machine),
                finished: rollout.machine.state.isFinished, actor: "rollout \(rollout.id)")
            rollout.savedStatus = status
            savedDecisions[rollout.id] = rollout.machine.decisions.count
        } catch {
            logger.error("cannot save the rollout", metadata: ["id": "\(rollout.id)", "error": "\(error)"])
        }
    }
}
