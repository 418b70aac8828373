import BulkheadCore
import Dispatch
import Foundation
import Logging
import Rollout
import Store

/// The rollout driver: owns the running rollouts' state machines, starts and operates
/// rollouts, and judges each stage on the host's `StageReport`s.
///
/// It talks to the host only through files: it reads the host's reports from the host
/// replica (`HostReplicaReader`, read-only: the host is that file's only writer) and
/// writes what it decides to the control store only (the machine with
/// `updateRollout`, which records a `.rollout(id)` change in the feed; the decision
/// audit; each pool's active version on completion). The host's stage runner follows
/// the feed and ships the versions. So the driver runs the same in the supervisor's
/// process or in `bulkhead control`: where it runs is where it is created.
///
/// Every stored property below `queue` is touched only on `queue`; the public methods
/// hop onto it. It never calls back into its creator, so a caller may wait on it from
/// its own queue.
public final class RolloutDriver: @unchecked Sendable {
    /// Serializes every read and write of the state below.
    private let queue = DispatchQueue(label: "bulkhead.control.rollouts")
    private let openStore: @Sendable () throws -> any ControlStore
    private let replicaPath: String
    private let checks: any ArtifactProcessChecks
    private let clock: @Sendable () -> Double
    private let logger: Logger
    /// Whether this driver leads. On one machine it always does (control.lock lets one
    /// control process run); in a fleet, the control process whose election won,
    /// and its store's writes are fenced by that leadership.
    private let leads: @Sendable () -> Bool
    /// Fault injection (`BULKHEAD_FAULT_HOLD_ROLLOUT_DRIVER=1`): the periodic drive does
    /// nothing, as if the driver's process were stopped; starts and operator commands
    /// still work. For the tests that show the host holds a stage on its own.
    private let held: Bool
    /// In a fleet: the hosts' reports, sent to this process over HTTP; stages are
    /// planned host by host and judged on the reports of the hosts they name. Nil
    /// on one machine, where the host's replica holds its one report.
    private let fleet: FleetReports?
    /// How long a fleet host may go without a report before a stage naming it pauses.
    public static let hostPatience: TimeInterval = 10

    /// The running rollouts, one per kind (on the queue).
    private var running: [ArtifactKind: DrivenRollout] = [:]
    /// The cohorts rollouts are planned over, as last given (on the queue).
    private var cohorts: [CohortConfiguration]
    /// The host replica's reader, once the file could be opened (on the queue).
    private var reader: HostReplicaReader?
    /// The last problem logged, so a steady failure is logged once (on the queue).
    private var problem: String?
    /// Whether the stored rollouts were read at start; until then (a control store
    /// that could not be opened) each drive tries again (on the queue).
    private var resumed = false
    /// When this driver last began to lead (read the stored rollouts), wall clock: a
    /// new leader hears from the hosts only once they find it, so for `hostPatience`
    /// none of them counts as away (on the queue).
    private var ledSince = -Double.infinity
    private var timer: DispatchSourceTimer?

    /// Creates a driver; nothing runs until `start()`.
    ///
    /// - Parameters:
    ///   - store: opens (or returns) the control store; throws while it cannot.
    ///   - replicaPath: the host replica whose stage reports the driver reads.
    ///   - checks: the producer's checks that need a process.
    ///   - cohorts: the pools rollouts are planned over.
    ///   - clock: wall-clock seconds (rollouts are stored and resumed after a restart).
    ///   - leads: whether this driver leads now (a follower neither drives nor starts
    ///     nor operates rollouts, and reads them again once it leads).
    ///   - fleet: in a fleet, the hosts' reports (plans widen host by host).
    public init(
        store: @escaping @Sendable () throws -> any ControlStore, replicaPath: String, checks: any ArtifactProcessChecks,
        cohorts: [CohortConfiguration], logger: Logger,
        clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
        leads: @escaping @Sendable () -> Bool = { true }, fleet: FleetReports? = nil
    ) {
        self.leads = leads
        self.fleet = fleet
        self.openStore = store
        self.replicaPath = replicaPath
        self.checks = checks
        self.cohorts = cohorts
        self.logger = logger
        self.clock = clock
        self.held = ProcessInfo.processInfo.environment["BULKHEAD_FAULT_HOLD_ROLLOUT_DRIVER"] == "1"
    }

    /// The refusal of a start or an operation by a driver that does not lead.
    static let following = ControlError(
        .controlPlaneUnavailable,
        "this control process does not lead the rollout driver now (another one does, or the election has no answer yet); retry")

    // MARK: - Life

    /// Reloads the rollouts the store says are running and resumes them (each running
    /// stage bakes again from now: the window before cannot be measured), then drives
    /// every `interval` seconds on the driver's own timer (nil: only `drive()` drives,
    /// as the unit tests do).
    public func start(interval: Double? = 0.2) {
        queue.sync {
            // A follower reads the stored rollouts once it leads (the drive does).
            if leads() { resumeStored() }
            guard let interval else { return }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + interval, repeating: interval)
            timer.setEventHandler { [weak self] in
                guard let self, !self.held else { return }
                self.driveOnQueue()
            }
            timer.resume()
            self.timer = timer
        }
    }

    /// Stops the timer; what is stored stays (another driver resumes it).
    public func stop() {
        queue.sync {
            timer?.cancel()
            timer = nil
            reader = nil
        }
    }

    /// Drives once now: reads the host's reports and lets each machine decide.
    public func drive() {
        queue.sync { driveOnQueue() }
    }

    /// The pools changed (scale): later rollouts are planned over these.
    public func setCohorts(_ cohorts: [CohortConfiguration]) {
        queue.sync { self.cohorts = cohorts }
    }

    // MARK: - Starting

    /// Validates an artifact, stores it as the next version of its kind and starts
    /// rolling it out; returns the rollout id. A start that is refused (invalid,
    /// frozen, pinned, one already running, a plan the engine refuses) stores
    /// nothing: every check comes before the artifact is written.
    public func startRollout(kind: ArtifactKind, content: String, actor: String) async -> Result<Int, ControlError> {
        // Awaited off the queue: a runtime check or a binary probe runs a process (up
        // to 10 s), and no thread waits for it.
        if let refusal = await validate(kind, content: content) { return .failure(refusal) }
        return await onQueue { [self] in
            guard leads() else { return .failure(Self.following) }
            do {
                let store = try openStore()
                if let refusal = try startRefusal(kind, store: store) { return .failure(refusal) }
                // A policy is one cohort's: its rollout covers that cohort's pools only.
                let only = kind == .policy ? try? CohortPolicy.parse(content).cohort : nil
                let stages = try plan(store: store, only: only)
                let first = stages.first?.pool ?? ""
                let previous = try pinnedVersion(kind, store: store) ?? hostActiveVersion(kind, pool: first) ?? store.activeVersion(of: kind, inPool: first) ?? 0
                // The machine is made and started before the artifact is stored, with
                // the version the store will hand out next (the driver is the only
                // writer of artifacts): a plan the engine refuses stores nothing either.
                let next = ((try store.latestArtifact(kind: kind))?.version ?? 0) + 1
                let now = clock()
                var machine = try RolloutMachine(
                    kind: kind, targetVersion: next, previousVersion: previous, stages: stages, now: now, frozen: false)
                let actions = try machine.start(now: now, by: actor)
                let artifact = try store.putArtifact(kind: kind, content: content, actor: actor)
                guard artifact.version == next else {
                    return .failure(ControlError(.store, "the store gave the \(kind) version \(artifact.version), not \(next) as expected; start the rollout again"))
                }
                let record = try store.createRollout(
                    kind: kind, version: artifact.version, fromVersion: previous, status: Self.statusName(machine.state),
                    state: try JSONEncoder().encode(machine), actor: actor)
                var rollout = DrivenRollout(id: record.id, machine: machine)
                rollout.savedStatus = Self.statusName(machine.state)
                rollout.savedDecisions = machine.decisions.count
                logger.info("rollout started", metadata: [
                    "id": "\(record.id)", "kind": "\(kind)", "version": "\(artifact.version)", "from": "\(previous)",
                ])
                // The machine's first stage was applied as it was created: the host
                // ships it when the record reaches it through the feed.
                perform(actions, for: &rollout, store: store)
                running[kind] = rollout
                return .success(record.id)
            } catch let error as RolloutError {
                return .failure(ControlError(.rollout, "\(error)"))
            } catch {
                return .failure(Self.storeFailure(error))
            }
        }
    }

    /// The stages of a new rollout: the host's pools in order on one machine; in a
    /// fleet, host by host over the hosts reporting now (on the queue). Each cohort is
    /// planned under the policy it runs (its order and gate), so a policy's own
    /// rollout is judged by the gate it replaces, never by the one it brings.
    /// `only` limits the plan to one cohort (a policy's).
    private func plan(store: any ControlStore, only: String? = nil) throws -> [Stage] {
        let (underPolicies, problems) = store.underActivePolicies(cohorts)
        for problem in problems {
            logger.error("a cohort's policy cannot be read; it is planned under its cohort file", metadata: ["problem": "\(problem)"])
        }
        var cohorts = underPolicies
        if let only {
            cohorts = cohorts.filter { $0.name == only }
            guard !cohorts.isEmpty else {
                throw ControlError(.invalidPolicy, "the policy is cohort '\(only)'s, and there is no such pool (\(self.cohorts.map(\.name).joined(separator: ", ")))")
            }
        }
        guard let fleet else { return RolloutPlan.stages(cohorts: cohorts) }
        let cordoned = try store.cordonedHosts()
        let hosts = fleet.planHosts(freshWithin: Self.hostPatience).filter { !cordoned.contains($0.name) }
        guard !hosts.isEmpty else {
            throw ControlError(.rollout, "no uncordoned host of the fleet reports to this control process yet; nothing to roll out to")
        }
        return RolloutPlan.fleetStages(cohorts: cohorts, hosts: hosts)
    }

    /// Why a rollout of `kind` cannot start now, or nil (on the queue).
    private func startRefusal(_ kind: ArtifactKind, store: any ControlStore) throws -> ControlError? {
        if let running = running[kind] {
            return ControlError(.rolloutRunning, "rollout \(running.id) of the \(kind) is still running; one per kind at a time")
        }
        if let stored = try store.runningRollout(kind: kind) {
            return ControlError(.rolloutRunning, "rollout \(stored.id) of the \(kind) is unfinished in the store (\(stored.status)); one per kind at a time")
        }
        if try isFrozen(store: store) {
            return ControlError(.frozen, "rollouts are frozen (break-glass freeze); unfreeze first")
        }
        // A pin is the operator's word that the kind stays where it is: only the
        // operator lifts it (no rollout moves on from it silently).
        if let pinned = try pinnedVersion(kind, store: store) {
            return ControlError(
                .pinned,
                "the \(kind) is pinned to version \(pinned) by break glass; nothing was stored. "
                    + "Release it first with: bulkhead break-glass unpin --kind \(kind.rawValue)")
        }
        return nil
    }

    /// Runs `work` on `target` (the driver's queue unless given); the calling task
    /// waits for it without holding a thread.
    private func onQueue<T: Sendable>(_ target: DispatchQueue? = nil, _ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            (target ?? queue).async { continuation.resume(returning: work()) }
        }
    }

    /// The producer's checks, before anything ships.
    private func validate(_ kind: ArtifactKind, content: String) async -> ControlError? {
        // Fault injection for the test that workers still refuse what slipped past.
        if ProcessInfo.processInfo.environment["BULKHEAD_FAULT_SKIP_PRODUCER_VALIDATION"] == "1" { return nil }
        switch kind {
        case .rules:
            if case .failure(let error) = RulesValidator.validate(Array(content.utf8)) {
                return ControlError(.invalidRules, "\(error)")
            }
            return nil
        case .runtime:
            return await checks.checkRuntime(content)
        case .policy:
            do {
                _ = try CohortPolicy.parse(content)
                return nil
            } catch {
                return ControlError(.invalidPolicy, "\(error)")
            }
        case .binary:
            let binary = BinaryArtifact(content: content)
            if let refusal = await checks.probeBinary(binary.path) { return refusal }
            // A hash given is the file's here: a host checks its own against it. Read
            // and hashed on a dispatch thread (a binary is tens of MB).
            if binary.sha256 != nil, let problem = await onQueue(.global(), { binary.problem() }) {
                return ControlError(.invalidBinary, problem)
            }
            return nil
        }
    }

    // MARK: - Break glass (the host's overrides, read from its replica)

    /// The host's freeze and pins, read from its replica (on the queue). A replica
    /// that does not exist yet (no host agent has started) holds none; one that
    /// cannot be read throws, and nothing advances or starts on it.
    private func hostOverrides() throws -> HostOverrides {
        if reader == nil {
            guard FileManager.default.fileExists(atPath: replicaPath) else { return HostOverrides() }
            reader = try HostReplicaReader(path: replicaPath)
        }
        guard let reader else { return HostOverrides() }
        do {
            return try reader.overrides()
        } catch {
            self.reader = nil
            throw error
        }
    }

    /// The version of `kind` the host runs in `pool` outside any rollout, or nil
    /// when it never recorded one. It wins over the control store's: after a
    /// break-glass pin is lifted the host keeps the pinned version, and a rollout
    /// must start from (and roll back to) what the pools run, not what last completed.
    private func hostActiveVersion(_ kind: ArtifactKind, pool: String) throws -> Int? {
        _ = try hostOverrides()
        guard let reader else { return nil }
        return try reader.activeVersion(of: kind, inPool: pool)
    }

    /// Whether rollouts are frozen: on the host (its break glass), or fleet-wide (the
    /// store's freeze, set with `break-glass freeze --etcd`). The one place the driver
    /// reads the freeze.
    private func isFrozen(store: any ControlStore) throws -> Bool {
        try hostOverrides().isFrozen || store.isFleetFrozen()
    }

    /// The version the host's break glass pinned `kind` to, or nil. The one place the
    /// driver reads the pins.
    private func pinnedVersion(_ kind: ArtifactKind, store: any ControlStore) throws -> Int? {
        try hostOverrides().pinnedVersion(of: kind)
    }

    // MARK: - Operator commands

    /// What an operator can do to a running rollout.
    public enum Command: String, Sendable, CaseIterable {
        /// Stop advancing (the stage is still judged).
        case pause
        /// Go on after a pause.
        case resume
        /// Put every stage back on the previous version.
        case abort
        /// Pass the current stage now.
        case promote
    }

    /// Pause, resume, abort or promote a rollout.
    public func operate(rollout id: Int, command: Command, actor: String) -> Result<RolloutStatus, ControlError> {
        queue.sync {
            guard leads() else { return .failure(Self.following) }
            // A driver that just took the lead reads the stored rollouts first.
            if !resumed { resumeStored() }
            guard let kind = running.first(where: { $0.value.id == id })?.key, var rollout = running[kind] else {
                do {
                    if let record = try openStore().rollout(id: id) {
                        return .failure(ControlError(.rolloutEnded, "rollout \(id) has ended (\(record.status))"))
                    }
                } catch {
                    return .failure(Self.storeFailure(error))
                }
                return .failure(ControlError(.notFound, "no rollout \(id)"))
            }
            let now = clock()
            do {
                let store = try openStore()
                let actions: [RolloutAction]
                switch command {
                case .pause: actions = try rollout.machine.pause(now: now, by: actor)
                case .resume: actions = try rollout.machine.resume(now: now, by: actor)
                case .abort: actions = try rollout.machine.abort(now: now, by: actor)
                case .promote: actions = try rollout.machine.promote(now: now, by: actor)
                }
                perform(actions, for: &rollout, store: store)
                keep(rollout, store: store, force: true)
                return .success(rollout.machine.status)
            } catch let error as RolloutError {
                return .failure(ControlError(.rollout, "\(error)"))
            } catch {
                return .failure(Self.storeFailure(error))
            }
        }
    }

    // MARK: - Reading

    /// A rollout's status, running or ended.
    public func status(id: Int) -> Result<RolloutStatus, ControlError> {
        if let live = queue.sync(execute: { running.values.first { $0.id == id }?.machine.status }) { return .success(live) }
        let record: RolloutRecord
        do {
            guard let found = try openStore().rollout(id: id) else {
                return .failure(ControlError(.notFound, "no rollout \(id)"))
            }
            record = found
        } catch {
            return .failure(Self.storeFailure(error))
        }
        guard let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) else {
            return .failure(ControlError(.store, "rollout \(id) cannot be read"))
        }
        return .success(machine.status)
    }

    /// The newest rollouts' records, newest first.
    public func records(limit: Int) -> Result<[RolloutRecord], ControlError> {
        Result { try openStore().rollouts(limit: limit) }.mapError(Self.storeFailure)
    }

    /// The running rollouts and the newest ended ones (up to `limit` in all), newest
    /// first, for the status page.
    public func recent(limit: Int) -> [(id: Int, status: RolloutStatus)] {
        var list = queue.sync { running.values.map { (id: $0.id, status: $0.machine.status) } }
        for record in ((try? openStore().rollouts(limit: limit)) ?? []) where !list.contains(where: { $0.id == record.id }) {
            if let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) {
                list.append((id: record.id, status: machine.status))
            }
        }
        return list.sorted { $0.id > $1.id }
    }

    // MARK: - Driving (on the queue)

    /// Reads the running rollouts from the store and tells each a new driver took it
    /// over (its running stage bakes again from now), saved at once: the host
    /// acknowledges the stage anew when it reads that.
    private func resumeStored() {
        let store: any ControlStore
        do {
            store = try openStore()
        } catch {
            note("cannot read the running rollouts; retrying", error)
            return
        }
        resumed = true
        ledSince = clock()
        var found: [ArtifactKind: DrivenRollout] = [:]
        for kind in ArtifactKind.allCases {
            guard let record = (try? store.runningRollout(kind: kind)) ?? nil else { continue }
            guard let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) else {
                logger.error("a stored rollout cannot be read; it is held", metadata: ["id": "\(record.id)"])
                continue
            }
            var rollout = DrivenRollout(id: record.id, machine: machine)
            let actions = rollout.machine.restored(now: clock())
            logger.info("rollout resumed by a new driver", metadata: [
                "id": "\(rollout.id)", "kind": "\(kind)", "state": "\(rollout.machine.state)",
            ])
            perform(actions, for: &rollout, store: store)
            found[kind] = rollout
        }
        running = found
        for rollout in found.values { keep(rollout, store: store, force: true) }
    }

    /// One drive: the freeze, then each rollout's latest fresh report.
    private func driveOnQueue() {
        guard leads() else {
            // Another control process drives. What this one holds goes stale meanwhile:
            // it reads the stored rollouts again once it leads.
            if resumed {
                running = [:]
                resumed = false
                logger.info("another control process leads the rollout driver; this one follows")
            }
            return
        }
        if !resumed { resumeStored() }
        guard !running.isEmpty else { return }
        let store: any ControlStore
        do {
            store = try openStore()
        } catch {
            note("cannot open the control store; rollouts do not advance", error)
            return
        }
        let now = clock()
        let frozen: Bool
        do {
            frozen = try isFrozen(store: store)
        } catch {
            // Never advance on a freeze that could not be read.
            note("cannot read the freeze; rollouts do not advance", error)
            return
        }
        let reports = fleet == nil ? hostReports() : [:]
        let cordoned: Set<String>
        do {
            cordoned = fleet == nil ? [] : try store.cordonedHosts()
        } catch {
            note("cannot read the cordoned hosts; rollouts do not advance", error)
            return
        }
        for kind in running.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard var rollout = running[kind] else { continue }
            // The host pinned the kind: its pools run the pin whatever the rollout
            // says, so the rollout cannot finish there; it ends here, saying why.
            if let pinned = try? pinnedVersion(kind, store: store),
               let actions = try? rollout.machine.abort(now: now, by: "break glass: the host pinned the \(kind) to v\(pinned)") {
                logger.warning("rollout aborted: the host pinned its kind", metadata: [
                    "id": "\(rollout.id)", "kind": "\(kind)", "pinned": "\(pinned)",
                ])
                perform(actions, for: &rollout, store: store)
                keep(rollout, store: store)
                continue
            }
            var actions = rollout.machine.setFrozen(frozen, now: now)
            if let fleet {
                switch FleetStageReports.combine(
                    rollout: rollout.id, machine: rollout.machine, hosts: fleet.stageReports(rollout: rollout.id, freshWithin: Self.hostPatience),
                    cordoned: cordoned) {
                case .report(let report): actions += take(report, into: &rollout, now: now)
                case .away(let hosts):
                    if now - ledSince >= Self.hostPatience { actions += rollout.machine.hostsAway(hosts, now: now) }
                case .everyHostCordoned:
                    // Nothing to ship to or judge: the stage passes on, as an operator's promote would.
                    actions += (try? rollout.machine.promote(now: now, by: "fleet: every host of the stage is cordoned")) ?? []
                case .waiting: break
                }
            } else if let report = reports[rollout.id] {
                actions += take(report, into: &rollout, now: now)
            }
            perform(actions, for: &rollout, store: store)
            keep(rollout, store: store)
        }
    }

    /// What `report` changes in the rollout's machine: a guard trip rolls back; a
    /// fresh sample of the machine's current stage and version is judged; anything
    /// else (another stage, another version, a window older than the stage's bake, a
    /// sample already judged) is stale and changes nothing.
    private func take(_ report: StageReport, into rollout: inout DrivenRollout, now: Double) -> [RolloutAction] {
        let machine = rollout.machine
        guard report.rollout == rollout.id, report.version == machine.targetVersion else { return [] }
        // The guard has already put the slots back on the host: a rollback never
        // waits for the stage to match (the driver may have moved on meanwhile).
        if let trip = report.guardTrip {
            return rollout.machine.hostGuardTripped(trip, now: now)
        }
        guard let stage = machine.currentStage, report.stage == stage,
              report.acknowledgedAt >= (machine.bakeStartedAt ?? -Double.infinity),
              report.measuredAt > rollout.lastMeasuredAt
        else { return [] }
        rollout.lastMeasuredAt = report.measuredAt
        return rollout.machine.observe(stage: report.sample, baseline: report.baseline, now: now)
    }

    /// The host's latest reports, by rollout id; none while the replica cannot be read.
    private func hostReports() -> [Int: StageReport] {
        do {
            if reader == nil { reader = try HostReplicaReader(path: replicaPath) }
            guard let reader else { return [:] }
            var reports: [Int: StageReport] = [:]
            for (id, data) in try reader.stageReports() {
                do {
                    reports[id] = try JSONDecoder().decode(StageReport.self, from: data)
                } catch {
                    note("a stage report cannot be read; it is ignored", error)
                }
            }
            if problem != nil {
                problem = nil
                logger.info("reading the host's stage reports again")
            }
            return reports
        } catch {
            reader = nil
            note("cannot read the host's stage reports; rollouts do not advance", error)
            return [:]
        }
    }

    /// Carries out what the machine decided: all of it writes to the control store.
    private func perform(_ actions: [RolloutAction], for rollout: inout DrivenRollout, store: any ControlStore) {
        let kind = rollout.machine.kind
        for action in actions {
            switch action {
            case .apply, .resetWindow, .rollback:
                // The host's stage runner ships the versions and (re)starts the window
                // when it reads the saved machine: nothing to do here but save it.
                break
            case .completed:
                // Before the machine is saved as completed: the host never sees the
                // rollout gone while the pools' active versions are still the old ones
                // (it would ship the old version back for a moment).
                // Every pool gets a runtime, rules or binary (one without workers too);
                // a policy is its own cohort's alone.
                let staged = Set(rollout.machine.stages.map(\.pool))
                let pools = kind == .policy ? staged : Set(cohorts.map(\.name)).union(staged)
                for pool in pools.sorted() {
                    do {
                        try store.setActiveVersion(rollout.machine.targetVersion, of: kind, inPool: pool, actor: "rollout \(rollout.id)")
                    } catch {
                        logger.error("cannot record the completed version", metadata: ["pool": "\(pool)", "error": "\(error)"])
                    }
                }
                logger.info("rollout completed", metadata: ["id": "\(rollout.id)", "kind": "\(kind)", "version": "\(rollout.machine.targetVersion)"])
            case .paused(let reason):
                logger.warning("rollout paused", metadata: ["id": "\(rollout.id)", "reason": "\(reason)"])
            case .record(let decision):
                if decision.event == .failed {
                    logger.error("rollout failed; rolling back", metadata: [
                        "id": "\(rollout.id)", "kind": "\(kind)", "to": "\(rollout.machine.previousVersion)",
                        "by": "\(decision.by)", "reason": "\(decision.message)",
                    ])
                }
                logger.info("rollout decision", metadata: ["id": "\(rollout.id)", "decision": "\(decision)"])
                do {
                    _ = try store.appendAudit(actor: "rollout \(rollout.id)", action: AuditAction("rollout.decision"),
                                              subject: "rollout/\(rollout.id)", detail: Self.json(decision))
                } catch {
                    logger.error("cannot record a rollout decision in the audit log", metadata: ["id": "\(rollout.id)", "error": "\(error)"])
                }
            }
        }
        running[kind] = rollout
    }

    /// Writes the machine to the store when its state or decisions changed (or when
    /// forced), and lets go of it once it ended. A record the store says has ended
    /// (a break-glass rollback finished it) is let go too.
    private func keep(_ rollout: DrivenRollout, store: any ControlStore, force: Bool = false) {
        var rollout = rollout
        let kind = rollout.machine.kind
        let status = Self.statusName(rollout.machine.state)
        if force || status != rollout.savedStatus || rollout.machine.decisions.count != rollout.savedDecisions {
            do {
                _ = try store.updateRollout(
                    id: rollout.id, status: status, state: try JSONEncoder().encode(rollout.machine),
                    finished: rollout.machine.state.isFinished, actor: "rollout \(rollout.id)")
                rollout.savedStatus = status
                rollout.savedDecisions = rollout.machine.decisions.count
            } catch let error as StoreError where error.kind == .conflict || error.kind == .notFound {
                logger.warning("the stored rollout ended without the driver; letting go of it", metadata: [
                    "id": "\(rollout.id)", "error": "\(error)",
                ])
                running[kind] = nil
                return
            } catch {
                // Kept in memory: the next drive saves it again.
                logger.error("cannot save the rollout", metadata: ["id": "\(rollout.id)", "error": "\(error)"])
            }
        }
        running[kind] = rollout.machine.state.isFinished && rollout.savedStatus == status ? nil : rollout
    }

    private func note(_ message: String, _ error: any Error) {
        let text = "\(message): \(error)"
        guard problem != text else { return }
        problem = text
        logger.error("\(message)", metadata: ["error": "\(error)"])
    }

    // MARK: - Helpers

    /// The state in one word, as the store's status column keeps it.
    public static func statusName(_ state: RolloutMachine.State) -> String {
        switch state {
        case .pending: "pending"
        case .running(let stage): "running stage \(stage)"
        case .paused(let stage, _): "paused at stage \(stage)"
        case .completed: "completed"
        case .rolledBack(let stage, _): "rolled back at stage \(stage)"
        case .aborted: "aborted"
        }
    }

    /// A store failure as the control plane reports it.
    static func storeFailure(_ error: any Error) -> ControlError { .fromStore(error) }

    private static func json<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// A running rollout as the driver holds it (a value, kept in `RolloutDriver.running`).
struct DrivenRollout {
    let id: Int
    var machine: RolloutMachine
    /// The status last written to the store, to save only on transitions.
    var savedStatus = ""
    /// The decisions already saved.
    var savedDecisions = 0
    /// When the last report judged was measured: a report is judged once.
    var lastMeasuredAt = -Double.infinity

    init(id: Int, machine: RolloutMachine) {
        self.id = id
        self.machine = machine
    }
}
