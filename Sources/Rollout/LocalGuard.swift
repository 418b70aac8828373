import BulkheadCore

/// What a host runs of one rollout now: the slots that have its new version. The
/// guard watches these; in one process the supervisor derives it from the rollout's
/// machine, and a host agent apart from the driver reads it from its replica (the
/// desired version of each slot), so the guard needs nothing else from the driver.
public struct GuardAssignment: Codable, Sendable, Equatable {
    /// The slots of one pool that run the new version, with the thresholds of the
    /// pool's gate the guard keeps to.
    public struct PoolSlots: Codable, Sendable, Equatable {
        /// The slots, ascending.
        public var slots: [Int]
        /// The gate's `max_crashes`: the guard never trips on fewer crashes of a slot
        /// than would fail the gate.
        public var maxCrashes: Int
        /// The gate's `max_new_signatures`: the guard trips on more new platform
        /// signatures than this, as the gate does.
        public var maxNewSignatures: Int

        /// Creates the slots of a pool.
        public init(slots: [Int], maxCrashes: Int = 0, maxNewSignatures: Int = 0) {
            self.slots = slots
            self.maxCrashes = maxCrashes
            self.maxNewSignatures = maxNewSignatures
        }
    }

    /// The rollout's id.
    public var rollout: Int
    /// The artifact kind rolled out.
    public var kind: ArtifactKind
    /// The stage being baked (an index into the rollout's plan).
    public var stage: Int
    /// The new version.
    public var targetVersion: Int
    /// The last completed version: what a slot goes back to.
    public var previousVersion: Int
    /// The slots with the new version, by pool.
    public var pools: [String: PoolSlots]

    /// Creates an assignment.
    public init(rollout: Int, kind: ArtifactKind, stage: Int, targetVersion: Int, previousVersion: Int, pools: [String: PoolSlots]) {
        self.rollout = rollout
        self.kind = kind
        self.stage = stage
        self.targetVersion = targetVersion
        self.previousVersion = previousVersion
        self.pools = pools
    }
}

/// What the guard saw and did, for the rollout's driver (which records it as the
/// reason of its rollback) and for the audit log. Codable, so a host agent can
/// carry it to a driver in another process.
public struct LocalGuardReport: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Why the guard tripped.
    public enum Reason: Codable, Sendable, Equatable, CustomStringConvertible {
        /// A slot with the new version crashed `crashes` times since it got it, none
        /// of them blamed on a customer script (`threshold`: crashes that trip).
        case crashLoop(pool: String, slot: Int, crashes: Int, threshold: Int)
        /// Platform error signatures the new version showed in a pool that the pool
        /// never showed before (nor on its other versions since), more than
        /// `allowed` of them.
        case newSignatures(pool: String, slot: Int, signatures: [String], allowed: Int)
        /// The host cannot run the binary its stage ships (`detail` says why: no
        /// file at its path, or another build there).
        case binaryMissing(detail: String)

        /// For people.
        public var description: String {
            switch self {
            case .crashLoop(let pool, let slot, let crashes, let threshold):
                "\(pool) slot \(slot) crash-looped: \(crashes) crash(es) on the new version not blamed on a customer script "
                    + "(trips at \(threshold))"
            case .newSignatures(let pool, let slot, let signatures, let allowed):
                "\(pool) slot \(slot) showed \(signatures.count) platform error signature(s) its pool never had "
                    + "(max \(allowed)): " + signatures.prefix(5).map { "\"\($0)\"" }.joined(separator: ", ")
            case .binaryMissing(let detail):
                detail
            }
        }
    }

    /// The rollout's id.
    public var rollout: Int
    /// The artifact kind.
    public var kind: ArtifactKind
    /// The stage being baked when the guard tripped.
    public var stage: Int
    /// The version the guard took off.
    public var targetVersion: Int
    /// The version it put back (the last completed one).
    public var restoredVersion: Int
    /// The slots it put back, by pool: every slot of the host that had the new version.
    public var slots: [String: [Int]]
    /// Why.
    public var reason: Reason
    /// When, on the clock the guard was given.
    public var time: Double

    /// Creates a report.
    public init(rollout: Int, kind: ArtifactKind, stage: Int, targetVersion: Int, restoredVersion: Int,
                slots: [String: [Int]], reason: Reason, time: Double) {
        self.rollout = rollout
        self.kind = kind
        self.stage = stage
        self.targetVersion = targetVersion
        self.restoredVersion = restoredVersion
        self.slots = slots
        self.reason = reason
        self.time = time
    }

    /// `free [0], pro [0, 1]`.
    public var slotList: String {
        slots.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    /// For people.
    public var description: String {
        "\(kind.rawValue) \(targetVersion) put back to \(restoredVersion) on \(slotList): \(reason)"
    }
}

/// What the I/O layer must do after a guard input.
public enum LocalGuardAction: Sendable, Equatable {
    /// Put `report.restoredVersion` of `report.kind` on every slot of
    /// `report.slots` now, without waiting for anyone, and hand the report to the
    /// rollout's driver.
    case putBack(LocalGuardReport)
}

/// The host's own protection during a rollout: a slot running a stage's new version
/// that crash-loops, or that shows a platform error signature its pool never had,
/// is put back on the last completed version by the host alone, whether the
/// rollout's driver is up or not. A plain value with no I/O and no clock of its
/// own, like `RolloutMachine`: inputs carry `now` and return `LocalGuardAction`s.
///
/// ## Driving it
/// - `update(_:)` with what the host runs now (every tick, and before a crash is
///   reported), then, per watched pool, `learn(kind:pool:signatures:)` with the
///   platform signatures the pool shows on any other version (the first time
///   also from before the stage: `hasLearned(kind:pool:)` says when), then
///   `observe(kind:pool:slot:signatures:now:)` with each watched slot's
///   signatures under the new version;
/// - `workerCrashed(pool:slot:blamedScript:now:)` when a worker of a slot ends;
/// - `heldVersion(kind:pool:slot:)` before shipping a version to a slot: while the
///   guard holds a slot back, nothing may put the new version on it again.
///
/// ## What trips it
/// The guard never judges more strictly than the stage's gate would at once; it
/// only does not wait for the driver:
/// - a crash loop: a slot's worker ended `max(2, max_crashes + 1)` times since the
///   slot got the new version, not counting ends a customer script was blamed for
///   (for a binary or a policy, every end counts, as in the gate);
/// - new signatures: more than `max_new_signatures` platform error signatures shown
///   under the new version that the pool never showed on another version, before
///   the stage or since.
/// Once tripped for a rollout's version it holds every slot of that assignment on
/// the last completed version until the assignment goes away (the rollout rolled
/// back or ended), and acts no more.
public struct LocalGuard: Sendable, Equatable {
    /// Crashes of one slot that make a crash loop, at least.
    public static let crashLoopCrashes = 2

    /// A slot of a pool.
    struct SlotKey: Hashable, Sendable {
        var pool: String
        var slot: Int
    }

    /// One assignment being watched.
    struct Watch: Sendable, Equatable {
        var assignment: GuardAssignment
        /// Per pool: the platform signatures it showed on other versions; a pool
        /// is absent until first learned.
        var known: [String: Set<String>] = [:]
        /// Per pool: the platform signatures shown under the new version.
        var shown: [String: Set<String>] = [:]
        /// Crashes per slot since it got the new version (the ones that count).
        var crashes: [SlotKey: Int] = [:]
        /// Set once the guard tripped: it holds the slots back from then on.
        var tripped: LocalGuardReport?
    }

    private var watches: [ArtifactKind: Watch] = [:]

    /// Creates a guard watching nothing.
    public init() {}

    // MARK: - Inputs

    /// What the host runs now: one assignment per kind with a rollout in a stage.
    /// A new rollout (or version) starts a fresh watch; a stage that widens adds
    /// its slots to the watch (counts so far are kept); a kind with no assignment
    /// any more is forgotten, and its hold released.
    public mutating func update(_ assignments: [GuardAssignment]) {
        var next: [ArtifactKind: Watch] = [:]
        for assignment in assignments where !assignment.pools.isEmpty {
            if var watch = watches[assignment.kind], watch.assignment.rollout == assignment.rollout,
               watch.assignment.targetVersion == assignment.targetVersion {
                watch.assignment = assignment
                next[assignment.kind] = watch
            } else {
                next[assignment.kind] = Watch(assignment: assignment)
            }
        }
        watches = next
    }

    /// Whether the guard has learned what `pool` showed before the stage of `kind`'s
    /// rollout (false: pass the pool's history too, e.g. its recent snapshots).
    public func hasLearned(kind: ArtifactKind, pool: String) -> Bool {
        watches[kind]?.known[pool] != nil
    }

    /// Platform signatures `pool` showed on versions other than `kind`'s new one:
    /// never new for this rollout.
    public mutating func learn(kind: ArtifactKind, pool: String, signatures: Set<String>) {
        guard var watch = watches[kind], watch.assignment.pools[pool] != nil else { return }
        watch.known[pool, default: []].formUnion(signatures)
        watches[kind] = watch
    }

    /// The platform signatures a watched slot shows under the new version (its
    /// cumulative ones: a signature counts once it appears).
    public mutating func observe(kind: ArtifactKind, pool: String, slot: Int, signatures: Set<String>, now: Double) -> [LocalGuardAction] {
        guard var watch = watches[kind], watch.tripped == nil,
              let spec = watch.assignment.pools[pool], spec.slots.contains(slot)
        else { return [] }
        let known = watch.known[pool] ?? []
        var shown = watch.shown[pool] ?? []
        shown.formUnion(signatures)
        watch.shown[pool] = shown
        let new = shown.subtracting(known)
        // Only what this slot showed can name it; the count is the pool's, as in the gate.
        guard new.count > max(0, spec.maxNewSignatures), !signatures.subtracting(known).isEmpty else {
            watches[kind] = watch
            return []
        }
        return trip(&watch, reason: .newSignatures(pool: pool, slot: slot, signatures: new.sorted(), allowed: max(0, spec.maxNewSignatures)),
                    now: now)
    }

    /// A worker of `pool`'s `slot` ended. `blamedScript` names the customer script
    /// it was blamed on, if any: such an end is the script's, whatever runtime or
    /// rules run (they never run inside the script's call), but a new binary is the
    /// sandbox that runs that call and a new policy sets the limits it enforces, so
    /// for those two every end counts.
    public mutating func workerCrashed(pool: String, slot: Int, blamedScript: String?, now: Double) -> [LocalGuardAction] {
        var actions: [LocalGuardAction] = []
        for kind in watches.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard var watch = watches[kind], watch.tripped == nil,
                  let spec = watch.assignment.pools[pool], spec.slots.contains(slot)
            else { continue }
            if blamedScript != nil && kind.isCountedPerVersion { continue }
            let key = SlotKey(pool: pool, slot: slot)
            watch.crashes[key, default: 0] += 1
            let crashes = watch.crashes[key] ?? 0
            let threshold = max(Self.crashLoopCrashes, spec.maxCrashes + 1)
            if crashes >= threshold {
                actions += trip(&watch, reason: .crashLoop(pool: pool, slot: slot, crashes: crashes, threshold: threshold), now: now)
            } else {
                watches[kind] = watch
            }
        }
        return actions
    }

    /// The host cannot run the binary a stage ships to it: the binary's rollout
    /// fails here, before any slot runs it.
    public mutating func binaryUnusable(detail: String, now: Double) -> [LocalGuardAction] {
        guard var watch = watches[.binary], watch.tripped == nil else { return [] }
        return trip(&watch, reason: .binaryMissing(detail: detail), now: now)
    }

    // MARK: - Queries

    /// The version the guard holds `slot` of `pool` on for `kind`, or nil when it
    /// holds nothing there.
    public func heldVersion(kind: ArtifactKind, pool: String, slot: Int) -> Int? {
        guard let watch = watches[kind], let report = watch.tripped,
              watch.assignment.pools[pool]?.slots.contains(slot) == true
        else { return nil }
        return report.restoredVersion
    }

    /// The report of the guard's trip for `kind`'s rollout, if it tripped.
    public func report(kind: ArtifactKind) -> LocalGuardReport? {
        watches[kind]?.tripped
    }

    // MARK: - Transitions

    private mutating func trip(_ watch: inout Watch, reason: LocalGuardReport.Reason, now: Double) -> [LocalGuardAction] {
        let assignment = watch.assignment
        let report = LocalGuardReport(
            rollout: assignment.rollout, kind: assignment.kind, stage: assignment.stage,
            targetVersion: assignment.targetVersion, restoredVersion: assignment.previousVersion,
            slots: assignment.pools.mapValues(\.slots), reason: reason, time: now.isFinite ? now : 0)
        watch.tripped = report
        watches[assignment.kind] = watch
        return [.putBack(report)]
    }
}
