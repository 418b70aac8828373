import BulkheadCore
/// The decisions of one rollout: which stage has the new version, when the next one
/// gets it, and when everything goes back. A plain value with no I/O and no clock of
/// its own: every input carries `now` and returns the `RolloutAction`s the
/// supervisor performs, in order. It is `Codable` so the supervisor can store it
/// after every input and resume it after a restart (then call `restored(now:)`).
///
/// ## Driving it
/// - `start(now:)` once; then `observe(stage:baseline:now:)` every 100–250 ms with the
///   current stage's window (see `status.currentStage` and the `.apply` /
///   `.resetWindow` actions for when a window starts) and the stage's baseline
///   (`RolloutPlan.baseline(forStage:in:)`);
/// - the operator's `pause`, `resume`, `abort`, `promote`; the global
///   `setFrozen(_:now:)` (idempotent: calling it every tick with the current flag is
///   fine); `restored(now:)` after a supervisor restart;
/// - `hostGuardTripped(_:now:)` when a host's `LocalGuard` put slots back on its own.
///
/// ## Invalid operations
/// Operator commands (`start`, `pause`, `resume`, `abort`, `promote`) *throw* a
/// `RolloutError` when they do not apply in the current state (resume a completed
/// rollout, promote a paused one, …), leave the machine untouched and record
/// nothing: the operator gets the error, and the log holds only what happened.
/// Observations and signals (`observe`, `setFrozen`, `restored`) never throw: where
/// they do not apply (a finished rollout) they return no action.
///
/// ## Safety rules
/// - A failing gate rolls back in every active state: running, held by a freeze
///   after passing, or paused. A freeze or a pause stops progress, never protection.
/// - Missing data never passes: see `HealthGate`.
/// - A non-finite `now` is replaced by the last time the machine saw (no NaN can
///   reach the stored state or the log).
public struct RolloutMachine: Codable, Sendable, Equatable {
    /// Where the rollout is.
    public enum State: Codable, Sendable, Equatable, CustomStringConvertible {
        /// Created, not started.
        case pending
        /// Stage `stage` has the new version and is baking (or, after passing while
        /// frozen, waits for the freeze to end).
        case running(stage: Int)
        /// Stage `stage` has the new version; nothing advances until `resume`.
        case paused(stage: Int, reason: PauseReason)
        /// Every stage passed.
        case completed
        /// Stage `stage` failed its gate and every stage that got the new version was
        /// rolled back; `reason` holds the gate's reasons.
        case rolledBack(stage: Int, reason: String)
        /// An operator aborted the rollout; what got the new version was rolled back.
        case aborted(by: String)

        /// For people.
        public var description: String {
            switch self {
            case .pending: "pending"
            case .running(let stage): "running (stage \(stage))"
            case .paused(let stage, let reason): "paused at stage \(stage) (\(reason))"
            case .completed: "completed"
            case .rolledBack(let stage, _): "rolled back (stage \(stage) failed)"
            case .aborted(let by): "aborted by \(by)"
            }
        }

        /// Whether the rollout has ended (completed, rolled back or aborted).
        public var isFinished: Bool {
            switch self {
            case .completed, .rolledBack, .aborted: true
            case .pending, .running, .paused: false
            }
        }
    }

    /// Where one stage is.
    public enum StageProgress: String, Codable, Sendable {
        /// Not reached yet.
        case pending
        /// Has the new version and is being judged.
        case baking
        /// Passed its gate or was promoted.
        case passed
        /// Failed its gate (the rollout was rolled back).
        case failed
        /// Never reached: the rollout ended before it.
        case skipped
        /// Was baking when an operator aborted the rollout.
        case aborted
    }

    /// The artifact kind rolled out.
    public let kind: ArtifactKind
    /// The version rolled out.
    public let targetVersion: Int
    /// The version a rollback restores.
    public let previousVersion: Int
    /// The plan, in order.
    public let stages: [Stage]
    /// When the rollout was created.
    public let createdAt: Double
    /// Where the rollout is.
    public private(set) var state: State
    /// Whether a global freeze holds the rollout where it is.
    public private(set) var frozen: Bool
    /// Per stage, in plan order.
    public private(set) var progress: [StageProgress]
    /// Per stage: whether its slots run the new version now (false again after a
    /// rollback).
    public private(set) var hasNewVersion: [Bool]
    /// The decision log, oldest first.
    public private(set) var decisions: [RolloutDecision]
    /// Error signatures seen on the old version (given at creation, and learned from
    /// every baseline since): never "new".
    public private(set) var knownSignatures: Set<String>
    /// When the current stage's bake clock (and measurement window) started; nil
    /// when no stage is active.
    public private(set) var bakeStartedAt: Double?
    /// The current stage's latest verdict (not logged unless it decided something,
    /// so the log is not flooded by "keep baking" several times a second).
    public private(set) var lastVerdict: GateVerdict?
    /// Crashes in the current window as last observed, carried over when the
    /// window restarts.
    private var lastObservedCrashes: Int
    /// Crashes of the current stage's earlier windows: the gate counts crashes since
    /// the stage began, and a restarted window must not forget them.
    private var carriedCrashes: Int
    /// The same two for the crashes left out because a script was blamed for them.
    private var lastObservedCrashesLeftOut: [String: Int] = [:]
    private var carriedCrashesLeftOut: [String: Int] = [:]

    /// Most signatures `knownSignatures` learns from baselines; past it, new ones are
    /// not learned (baselines still count in the call they come with).
    public static let maxKnownSignatures = 1000

    /// Creates a pending rollout.
    ///
    /// - Parameters:
    ///   - kind: the artifact kind.
    ///   - targetVersion: the version to roll out.
    ///   - previousVersion: the version a rollback restores.
    ///   - stages: the plan (`RolloutPlan.stages(cohorts:)`).
    ///   - now: the clock.
    ///   - knownSignatures: error signatures seen on the old version before the
    ///     rollout (e.g. the last hour's); they never count as new.
    ///   - frozen: whether a global freeze is on.
    /// - Throws: `RolloutError` for an empty plan, a stage without slots, the same
    ///   version twice or a non-finite `now`.
    public init(
        kind: ArtifactKind, targetVersion: Int, previousVersion: Int, stages: [Stage], now: Double,
        knownSignatures: Set<String> = [], frozen: Bool = false
    ) throws(RolloutError) {
        guard !stages.isEmpty else { throw .emptyPlan }
        if let empty = stages.firstIndex(where: { $0.slots.isEmpty }) {
            throw .stageWithoutSlots(stage: empty, name: stages[empty].name)
        }
        guard targetVersion != previousVersion else { throw .sameVersion(targetVersion) }
        guard now.isFinite else { throw .invalidTime(now) }
        self.kind = kind
        self.targetVersion = targetVersion
        self.previousVersion = previousVersion
        self.stages = stages
        self.createdAt = now
        self.state = .pending
        self.frozen = frozen
        self.progress = Array(repeating: .pending, count: stages.count)
        self.hasNewVersion = Array(repeating: false, count: stages.count)
        self.decisions = []
        self.knownSignatures = Set(knownSignatures.prefix(Self.maxKnownSignatures))
        self.bakeStartedAt = nil
        self.lastVerdict = nil
        self.lastObservedCrashes = 0
        self.carriedCrashes = 0
    }

    // MARK: - Queries

    /// The stage being baked or paused, if any.
    public var currentStage: Int? {
        switch state {
        case .running(let stage), .paused(let stage, _): stage
        case .pending, .completed, .rolledBack, .aborted: nil
        }
    }

    /// The stages whose slots run the new version now.
    public var stagesWithNewVersion: [Int] {
        hasNewVersion.indices.filter { hasNewVersion[$0] }
    }

    /// The version slot `slot` of `pool` should run according to this rollout: the
    /// target when its stage has the new version, else the previous one; nil when
    /// the slot is in no stage (a pool scaled up after the plan was made keeps its
    /// usual version). A supervisor reconciles workers with this after a restart or
    /// when it restarts a worker: versions belong to slots, not pids.
    ///
    /// In a fleet, `host` names the host asking: a slot belongs to the first stage
    /// that covers it there (the canary host's canary slots, then its group's stage).
    public func version(forPool pool: String, slot: Int, host: String? = nil) -> Int? {
        guard let index = stages.firstIndex(where: { $0.covers(pool: pool, slot: slot, host: host) }) else {
            return nil
        }
        return hasNewVersion[index] ? targetVersion : previousVersion
    }

    /// Everything `bulkhead rollout status` shows.
    public var status: RolloutStatus {
        RolloutStatus(
            kind: kind, targetVersion: targetVersion, previousVersion: previousVersion, state: state,
            frozen: frozen, currentStage: currentStage, bakeStartedAt: bakeStartedAt,
            stages: stages.indices.map { index in
                RolloutStatus.StageStatus(
                    index: index, name: stages[index].name, pool: stages[index].pool, slots: stages[index].slots,
                    progress: progress[index], hasNewVersion: hasNewVersion[index])
            },
            stagesWithNewVersion: stagesWithNewVersion, lastVerdict: lastVerdict, decisions: decisions)
    }

    // MARK: - Operator commands

    /// Starts the rollout: the first stage gets the new version.
    ///
    /// - Parameter by: who started it, for the log.
    /// - Throws: `.invalidTransition` unless pending; `.frozen` during a freeze
    ///   (starting is advancing).
    public mutating func start(now: Double, by: String = "operator") throws(RolloutError) -> [RolloutAction] {
        guard case .pending = state else {
            throw .invalidTransition(operation: "start", state: state, reason: "it has already started")
        }
        guard !frozen else { throw .frozen(operation: "start") }
        let now = clock(now)
        state = .running(stage: 0)
        let entry = record(
            now, .started, stage: 0, by: by,
            message: "rolling \(kind.rawValue) \(previousVersion) → \(targetVersion) through "
                + stages.map(\.name).joined(separator: ", "))
        return [entry] + begin(stage: 0, now: now)
    }

    /// Pauses a running rollout: nothing advances until `resume`. The stage keeps
    /// being judged meanwhile, so a failure still rolls back, and its bake clock runs
    /// on (the new version keeps serving, so the time counts as bake time).
    ///
    /// - Throws: `.invalidTransition` unless running.
    public mutating func pause(now: Double, by: String) throws(RolloutError) -> [RolloutAction] {
        guard case .running(let index) = state else {
            throw .invalidTransition(operation: "pause", state: state, reason: reasonNotRunning)
        }
        let now = clock(now)
        let reason = PauseReason.requested(by: by)
        state = .paused(stage: index, reason: reason)
        let entry = record(now, .paused, stage: index, by: by, message: "paused at \(stages[index].name)")
        return [entry, .paused(reason)]
    }

    /// Pauses a running rollout because hosts of its current stage stopped reporting
    /// (cut off, or dead: `bulkhead host cordon` takes a dead one out). The stage's
    /// other hosts keep being judged; resuming (by an operator) bakes it again.
    public mutating func hostsAway(_ hosts: [String], now: Double) -> [RolloutAction] {
        guard case .running(let index) = state, !hosts.isEmpty else { return [] }
        let now = clock(now)
        let reason = PauseReason.hostsAway(hosts)
        state = .paused(stage: index, reason: reason)
        let entry = record(
            now, .paused, stage: index, by: "fleet",
            message: "paused at \(stages[index].name): \(reason)")
        return [entry, .paused(reason)]
    }

    /// Resumes a paused rollout.
    ///
    /// Resuming a rollout paused as inconclusive restarts the stage's bake clock and
    /// window (with its max-bake timeout): the operator asks for a new measurement,
    /// and with the old clock the stage would be inconclusive again at once. After an
    /// operator's pause the clock runs on. A stage that had already passed (held by a
    /// freeze that has ended since) advances now.
    ///
    /// - Throws: `.invalidTransition` unless paused.
    public mutating func resume(now: Double, by: String) throws(RolloutError) -> [RolloutAction] {
        guard case .paused(let index, let reason) = state else {
            throw .invalidTransition(
                operation: "resume", state: state,
                reason: state.isFinished ? "it has ended" : "it is not paused")
        }
        let now = clock(now)
        state = .running(stage: index)
        var actions: [RolloutAction] = []
        if reason.restartsBake {
            actions.append(record(
                now, .resumed, stage: index, by: by,
                message: "resumed \(stages[index].name); its bake restarts now (\(reason))"))
            actions.append(restartWindow(stage: index, now: now))
        } else {
            actions.append(record(now, .resumed, stage: index, by: by, message: "resumed \(stages[index].name)"))
        }
        actions += advanceIfHeld(stage: index, now: now, by: by)
        return actions
    }

    /// Aborts the rollout: every stage that got the new version goes back to the
    /// previous version at once. A pending rollout just ends.
    ///
    /// - Throws: `.invalidTransition` when the rollout has already ended.
    public mutating func abort(now: Double, by: String) throws(RolloutError) -> [RolloutAction] {
        guard !state.isFinished else {
            throw .invalidTransition(operation: "abort", state: state, reason: "it has ended")
        }
        let now = clock(now)
        let index = currentStage
        if let index, progress[index] == .baking { progress[index] = .aborted }
        skipPendingStages()
        let applied = stagesWithNewVersion
        for stage in applied { hasNewVersion[stage] = false }
        state = .aborted(by: by)
        endStage()
        if applied.isEmpty {
            return [record(now, .aborted, stage: index, by: by, message: "aborted before any stage got the new version")]
        }
        let entry = record(
            now, .aborted, stage: index, by: by, verdict: lastVerdict,
            message: "aborted; rolling back \(names(applied)) to version \(previousVersion)")
        return [entry, .rollback(toVersion: previousVersion, stages: applied)]
    }

    /// Passes the current stage now, without the rest of its bake, and starts the
    /// next one (or completes the rollout). The last verdict is logged with it.
    ///
    /// - Throws: `.invalidTransition` unless running (a paused rollout must be
    ///   resumed first); `.frozen` during a freeze.
    public mutating func promote(now: Double, by: String) throws(RolloutError) -> [RolloutAction] {
        guard case .running(let index) = state else {
            var reason = reasonNotRunning
            if case .paused = state { reason = "it is paused: resume it first" }
            throw .invalidTransition(operation: "promote", state: state, reason: reason)
        }
        guard !frozen else { throw .frozen(operation: "promote") }
        // Unreachable today (a passed stage only waits for a freeze to end), kept so
        // a stage can never be passed twice.
        guard progress[index] == .baking else {
            throw .invalidTransition(operation: "promote", state: state, reason: "its stage has already passed")
        }
        let now = clock(now)
        progress[index] = .passed
        let entry = record(
            now, .promoted, stage: index, by: by, verdict: lastVerdict,
            message: "promoted \(stages[index].name) without the rest of its bake")
        return [entry] + advance(from: index, now: now, by: by)
    }

    // MARK: - Observations and signals

    /// Judges the current stage on its window.
    ///
    /// - Parameters:
    ///   - sample: the current stage's slots, counted since the stage's window
    ///     started (the last `.apply` or `.resetWindow` for it).
    ///   - baseline: the old version over the same window, or the stage's own slots
    ///     before it began (`RolloutPlan.baseline(forStage:in:)`); nil if none.
    ///   - now: the clock.
    /// - Returns: nothing while the stage bakes; a pass, a failure (rollback) or an
    ///   inconclusive pause with their records otherwise; nothing in a finished or
    ///   pending rollout.
    public mutating func observe(stage sample: StageSample, baseline: StageSample?, now: Double) -> [RolloutAction] {
        guard let index = currentStage else { return [] }
        let now = clock(now)
        if let baseline { learn(baseline.presentSignatures) }
        lastObservedCrashes = max(0, sample.crashes)
        lastObservedCrashesLeftOut = sample.crashesLeftOut
        var counted = sample
        counted.crashes = lastObservedCrashes + carriedCrashes
        counted.crashesLeftOut = carriedCrashesLeftOut.merging(lastObservedCrashesLeftOut, uniquingKeysWith: +)
        let verdict = HealthGate.evaluate(
            gate: stages[index].gate, stage: counted, baseline: baseline,
            elapsedSeconds: now - (bakeStartedAt ?? now), knownSignatures: knownSignatures)
        lastVerdict = verdict

        let activelyBaking: Bool
        if case .running = state, progress[index] == .baking {
            activelyBaking = true
        } else {
            activelyBaking = false
        }
        switch verdict.outcome {
        case .fail:
            return rollBack(failed: index, verdict: verdict, now: now)
        case .inconclusive where activelyBaking:
            let reason = PauseReason.inconclusive(detail: verdict.reasons.joined(separator: "; "))
            state = .paused(stage: index, reason: reason)
            let entry = record(
                now, .inconclusive, stage: index, by: "gate", verdict: verdict,
                message: "\(stages[index].name) paused for an operator: \(verdict.reasons.joined(separator: "; "))")
            return [entry, .paused(reason)]
        case .pass where activelyBaking:
            progress[index] = .passed
            if frozen {
                let entry = record(
                    now, .passed, stage: index, by: "gate", verdict: verdict,
                    message: "\(stages[index].name) passed; held by the freeze (still watched for failures)")
                return [entry]
            }
            let entry = record(
                now, .passed, stage: index, by: "gate", verdict: verdict,
                message: "\(stages[index].name) passed: \(verdict.reasons.joined(separator: "; "))")
            return [entry] + advance(from: index, now: now, by: "gate")
        case .pass, .inconclusive, .keepBaking:
            // Paused, or passed and held by a freeze: only a failure changes anything.
            return []
        }
    }

    /// Sets the global freeze. While frozen nothing advances to a further stage (a
    /// stage that passes is held), but a failing gate still rolls back: a freeze is
    /// declared during an incident, exactly when a bad artifact must not stay out.
    /// Ending the freeze advances a held stage at once. Idempotent: the same value
    /// twice does nothing.
    public mutating func setFrozen(_ frozen: Bool, now: Double) -> [RolloutAction] {
        guard frozen != self.frozen else { return [] }
        self.frozen = frozen
        guard !state.isFinished else { return [] }
        let now = clock(now)
        let index = currentStage
        if frozen {
            return [record(now, .frozen, stage: index, by: "freeze", message: "frozen: no stage advances")]
        }
        var actions = [record(now, .unfrozen, stage: index, by: "freeze", message: "unfrozen")]
        if case .running(let index) = state { actions += advanceIfHeld(stage: index, now: now, by: "freeze") }
        return actions
    }

    /// The host's local guard put the new version's slots back on the previous
    /// version on its own (see `LocalGuard`): the rollout rolls back as after a
    /// failed gate, every stage that got the new version, and records a decision by
    /// `"local guard"` with the guard's reason. In every active state, paused and
    /// frozen included: the guard has already acted, and the rollout must not put
    /// the version back. A report of another kind or version, or one that comes
    /// after the rollout ended, changes nothing.
    public mutating func hostGuardTripped(_ report: LocalGuardReport, now: Double) -> [RolloutAction] {
        guard report.kind == kind, report.targetVersion == targetVersion, let index = currentStage else { return [] }
        let now = clock(now)
        let applied = stagesWithNewVersion
        for stage in applied { hasNewVersion[stage] = false }
        if progress[index] == .baking { progress[index] = .failed }
        skipPendingStages()
        let reason = "local guard: \(report.reason)"
        state = .rolledBack(stage: index, reason: reason)
        endStage()
        var message = "the host's local guard put \(report.slotList) back on version \(report.restoredVersion): "
            + "\(report.reason); rolling back \(names(applied)) to version \(previousVersion)"
        if frozen { message += " (a freeze never stops an automatic rollback)" }
        let entry = record(now, .failed, stage: index, by: "local guard", message: message)
        return [entry, .rollback(toVersion: previousVersion, stages: applied)]
    }

    /// Tells the machine a new supervisor took it over (call once, after decoding
    /// the stored copy and before the first `observe`).
    ///
    /// A running or paused stage restarts its bake clock and window now, because the
    /// new supervisor cannot reconstruct the window: workers report cumulative
    /// counters, and the counters at the moment the stage began were in the old
    /// supervisor's memory. Keeping the old clock would let the stage pass on the
    /// little traffic measured since the restart (and time out as inconclusive at
    /// once after a long outage). Crashes counted so far are carried over. Versions
    /// are not re-sent: reconcile each worker with `version(forPool:slot:)`.
    public mutating func restored(now: Double) -> [RolloutAction] {
        guard let index = currentStage else { return [] }
        let now = clock(now)
        let entry = record(
            now, .restored, stage: index, by: "supervisor",
            message: "taken over by a new supervisor; \(stages[index].name) bakes again from now "
                + "(the window before the restart cannot be measured)")
        return [entry, restartWindow(stage: index, now: now)]
    }

    // MARK: - Transitions

    /// Gives stage `index` the new version and starts its bake.
    private mutating func begin(stage index: Int, now: Double) -> [RolloutAction] {
        progress[index] = .baking
        hasNewVersion[index] = true
        bakeStartedAt = now
        lastVerdict = nil
        lastObservedCrashes = 0
        carriedCrashes = 0
        lastObservedCrashesLeftOut = [:]
        carriedCrashesLeftOut = [:]
        return [.apply(stage: index, version: targetVersion)]
    }

    /// After stage `index` passed: the next stage begins, or the rollout completes
    /// (`by` decided the last step, for the log).
    private mutating func advance(from index: Int, now: Double, by: String) -> [RolloutAction] {
        let next = index + 1
        if next < stages.count {
            state = .running(stage: next)
            return begin(stage: next, now: now)
        }
        state = .completed
        endStage()
        let entry = record(
            now, .completed, stage: nil, by: by,
            message: "\(kind.rawValue) \(targetVersion) is on every stage")
        return [entry, .completed]
    }

    /// Advances a stage that passed while frozen, once nothing holds it any more
    /// (`by`: whoever lifted the last hold, the freeze or an operator's resume).
    private mutating func advanceIfHeld(stage index: Int, now: Double, by: String) -> [RolloutAction] {
        guard !frozen, case .running(index) = state, progress[index] == .passed else { return [] }
        return advance(from: index, now: now, by: by)
    }

    /// Stage `index` failed: every stage with the new version goes back.
    private mutating func rollBack(failed index: Int, verdict: GateVerdict, now: Double) -> [RolloutAction] {
        let applied = stagesWithNewVersion
        for stage in applied { hasNewVersion[stage] = false }
        // A stage that had passed and is held by a freeze keeps its "passed": it
        // passed; it is the later failure that rolled it back.
        if progress[index] == .baking { progress[index] = .failed }
        skipPendingStages()
        let reasons = verdict.reasons.joined(separator: "; ")
        state = .rolledBack(stage: index, reason: reasons)
        endStage()
        var message = "\(stages[index].name) failed (\(verdict.failedChecks.map(\.rawValue).joined(separator: ", "))): "
            + "\(reasons); rolling back \(names(applied)) to version \(previousVersion)"
        if frozen { message += " (a freeze never stops an automatic rollback)" }
        let entry = record(now, .failed, stage: index, by: "gate", verdict: verdict, message: message)
        return [entry, .rollback(toVersion: previousVersion, stages: applied)]
    }

    /// Restarts stage `index`'s bake clock and measurement window now.
    private mutating func restartWindow(stage index: Int, now: Double) -> RolloutAction {
        carriedCrashes += lastObservedCrashes
        lastObservedCrashes = 0
        carriedCrashesLeftOut.merge(lastObservedCrashesLeftOut, uniquingKeysWith: +)
        lastObservedCrashesLeftOut = [:]
        bakeStartedAt = now
        lastVerdict = nil
        return .resetWindow(stage: index)
    }

    /// Clears the per-stage clock when no stage is active any more.
    private mutating func endStage() {
        bakeStartedAt = nil
        lastObservedCrashes = 0
        carriedCrashes = 0
        lastObservedCrashesLeftOut = [:]
        carriedCrashesLeftOut = [:]
    }

    private mutating func skipPendingStages() {
        for index in progress.indices where progress[index] == .pending {
            progress[index] = .skipped
        }
    }

    private mutating func learn(_ signatures: Set<String>) {
        for signature in signatures where knownSignatures.count < Self.maxKnownSignatures {
            knownSignatures.insert(signature)
        }
    }

    /// Appends a decision to the log and returns the action that records it.
    private mutating func record(
        _ now: Double, _ event: RolloutDecision.Event, stage: Int?, by: String, verdict: GateVerdict? = nil,
        message: String
    ) -> RolloutAction {
        let decision = RolloutDecision(
            time: now, event: event, stage: stage, stageName: stage.map { stages[$0].name }, by: by,
            verdict: verdict, message: message)
        decisions.append(decision)
        return .record(decision)
    }

    /// `now` when finite, else the latest time the machine has seen.
    private func clock(_ now: Double) -> Double {
        if now.isFinite { return now }
        return decisions.last?.time ?? bakeStartedAt ?? createdAt
    }

    private func names(_ indices: [Int]) -> String {
        indices.map { stages[$0].name }.joined(separator: ", ")
    }

    private var reasonNotRunning: String {
        switch state {
        case .pending: "it has not started"
        case .paused: "it is already paused"
        case .completed, .rolledBack, .aborted: "it has ended"
        case .running: "it is running"
        }
    }

    // MARK: - Decoding

    private enum CodingKeys: String, CodingKey {
        case kind, targetVersion, previousVersion, stages, createdAt, state, frozen, progress, hasNewVersion
        case decisions, knownSignatures, bakeStartedAt, lastVerdict, lastObservedCrashes, carriedCrashes
        case lastObservedCrashesLeftOut, carriedCrashesLeftOut
    }

    /// Decodes a stored rollout, refusing one whose parts do not fit together (a row
    /// of the store is outside input: a wrong index must be an error, not a crash).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decode(ArtifactKind.self, forKey: .kind)
        targetVersion = try container.decode(Int.self, forKey: .targetVersion)
        previousVersion = try container.decode(Int.self, forKey: .previousVersion)
        stages = try container.decode([Stage].self, forKey: .stages)
        createdAt = try container.decode(Double.self, forKey: .createdAt)
        state = try container.decode(State.self, forKey: .state)
        frozen = try container.decode(Bool.self, forKey: .frozen)
        progress = try container.decode([StageProgress].self, forKey: .progress)
        hasNewVersion = try container.decode([Bool].self, forKey: .hasNewVersion)
        decisions = try container.decode([RolloutDecision].self, forKey: .decisions)
        knownSignatures = try container.decode(Set<String>.self, forKey: .knownSignatures)
        bakeStartedAt = try container.decodeIfPresent(Double.self, forKey: .bakeStartedAt)
        lastVerdict = try container.decodeIfPresent(GateVerdict.self, forKey: .lastVerdict)
        lastObservedCrashes = try container.decode(Int.self, forKey: .lastObservedCrashes)
        carriedCrashes = try container.decode(Int.self, forKey: .carriedCrashes)
        // Absent from rollouts stored before crashes were left out.
        lastObservedCrashesLeftOut = try container.decodeIfPresent([String: Int].self, forKey: .lastObservedCrashesLeftOut) ?? [:]
        carriedCrashesLeftOut = try container.decodeIfPresent([String: Int].self, forKey: .carriedCrashesLeftOut) ?? [:]

        guard !stages.isEmpty, progress.count == stages.count, hasNewVersion.count == stages.count else {
            throw DecodingError.dataCorruptedError(
                forKey: .progress, in: container,
                debugDescription: "a stored rollout needs one progress and one version flag per stage, and a stage")
        }
        if let index = currentStage, !stages.indices.contains(index) {
            throw DecodingError.dataCorruptedError(
                forKey: .state, in: container,
                debugDescription: "stage \(index) of a stored rollout is not in its \(stages.count)-stage plan")
        }
        if case .rolledBack(let index, _) = state, !stages.indices.contains(index) {
            throw DecodingError.dataCorruptedError(
                forKey: .state, in: container,
                debugDescription: "stage \(index) of a stored rollout is not in its \(stages.count)-stage plan")
        }
    }
}
