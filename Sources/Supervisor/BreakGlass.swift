import BulkheadCore
import Foundation
import Rollout
import Store

/// Break glass: the operator's instant path, with no circular dependency. It is a
/// layer of overrides in the host's own replica (`HostOverrides`: the freeze, the
/// pins) that takes precedence over the change feed and holds until cleared on the
/// host. It works on the replica alone (the host agent applies it at once when asked
/// over `admin.sock`, or on start when it was written with no agent running), reads
/// the control store only to choose a version, needs neither the HTTP API nor a
/// token, and every action is in the replica's audit log with who and when.
///
/// It must never make things worse: a rollback pins, by default, the newest version
/// that completed a rollout (one every pool has run under the gate), never one a gate
/// rejected or one that never finished; it says what it will pin where before doing
/// it; and a pin holds until `unpin` (a rollout of a pinned kind is refused).
public enum BreakGlass {
    /// What `break-glass status` shows.
    public struct Status: Codable, Sendable {
        /// Whether rollouts are frozen.
        public var frozen: Bool
        /// Pinned versions per artifact kind; a kind is absent when not pinned.
        public var pins: [String: Int]
        /// Rollouts not finished, `kind: id (state)`.
        public var running: [String: String]

        /// A status.
        public init(frozen: Bool, pins: [String: Int], running: [String: String]) {
            self.frozen = frozen
            self.pins = pins
            self.running = running
        }
    }

    /// What became of an artifact version's rollout, as the version's track record.
    public enum Outcome: Equatable, Sendable {
        /// Every stage passed: every pool ran it under the gate.
        case completed(rollout: Int)
        /// A gate failed it and rolled it back.
        case rejected(rollout: Int, stage: String, reason: String)
        /// Still running or paused, or aborted: it never finished.
        case unfinished(rollout: Int, state: String)
    }

    /// What a rollback will do, shown (and confirmed) before it is done.
    public struct RollbackPlan: Codable, Sendable, Equatable {
        /// One pool: the versions its workers run now.
        public struct PoolChange: Codable, Sendable, Equatable {
            /// Pool name.
            public var pool: String
            /// The versions of the kind its workers run now, lowest first (empty: no worker).
            public var from: [Int]
        }

        /// The artifact kind.
        public var kind: ArtifactKind
        /// The version every pool will be pinned to.
        public var version: Int
        /// Why this version, for people.
        public var why: String
        /// Every pool, with what it runs now.
        public var pools: [PoolChange]
        /// The unfinished rollout of the kind that the rollback aborts, `id (state)`.
        public var aborts: String?
        /// What the operator should know before saying yes (a version a gate rejected).
        public var warnings: [String]
    }

    /// What break glass reads about the history of each artifact kind: the rollouts
    /// (read-only, from the control store) and the versions that exist. With no
    /// control store to read, what the host's replica holds stands in.
    public struct History: Sendable {
        /// Every rollout recorded, newest first (empty when only the replica was read).
        public var rollouts: [RolloutRecord]
        /// The newest stored version of each kind.
        public var latest: [ArtifactKind: Int]
        /// Versions known to exist beyond 1...latest (the replica's artifacts).
        public var known: [ArtifactKind: Set<Int>]
        /// Per kind, the version every completed rollout left active, when only the
        /// replica could be read (its active versions are what completed rollouts left).
        public var replicaActive: [ArtifactKind: Int]
        /// The unfinished rollout of each kind, `id (state)`.
        public var running: [ArtifactKind: String]
        /// Set when the control store could not be read: why, for the plan's reader.
        public var fallback: String?

        /// Reads the control store (only reads: the host never writes it).
        public static func read(store: some BulkheadStore) throws -> History {
            var history = History(rollouts: try store.rollouts(limit: Int(Int32.max)), latest: [:], known: [:], replicaActive: [:], running: [:])
            for kind in ArtifactKind.allCases {
                history.latest[kind] = try store.latestArtifact(kind: kind)?.version ?? 0
                if let record = try store.runningRollout(kind: kind) { history.running[kind] = "\(record.id) (\(record.status))" }
            }
            return history
        }

        /// What the replica holds, for when the control store cannot be read.
        public static func read(replica: HostReplica, because reason: String) throws -> History {
            let contents = try replica.contents()
            var history = History(rollouts: [], latest: [:], known: [:], replicaActive: [:], running: [:], fallback: reason)
            for kind in ArtifactKind.allCases {
                history.known[kind] = Set(try replica.artifactVersions(of: kind))
                history.latest[kind] = 0
                if let newest = contents.activeVersions.filter({ $0.kind == kind }).compactMap(\.version).max() {
                    history.replicaActive[kind] = newest
                }
            }
            for rollout in contents.rollouts { history.running[rollout.kind] = "\(rollout.id)" }
            return history
        }

        /// The control store's history when it can be read, else the replica's.
        public static func read(store: () throws -> SQLiteStore, replica: HostReplica) throws -> History {
            do {
                return try read(store: try store())
            } catch {
                return try read(replica: replica, because: "the control store cannot be read (\(error))")
            }
        }

        func exists(_ kind: ArtifactKind, _ version: Int) -> Bool {
            version == 0 || version <= (latest[kind] ?? 0) || known[kind]?.contains(version) == true
        }
    }

    // MARK: - Choosing the version

    /// The outcome of a stored rollout.
    public static func outcome(of record: RolloutRecord) -> Outcome {
        if let machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) {
            switch machine.state {
            case .completed:
                return .completed(rollout: record.id)
            case .rolledBack(let stage, let reason):
                let name = machine.stages.indices.contains(stage) ? machine.stages[stage].name : "stage \(stage)"
                return .rejected(rollout: record.id, stage: name, reason: reason)
            default:
                return .unfinished(rollout: record.id, state: machine.state.description)
            }
        }
        // A state this build cannot read: trust only the status word it was saved with.
        if record.finished && record.status == "completed" { return .completed(rollout: record.id) }
        if record.status.hasPrefix("rolled back") {
            return .rejected(rollout: record.id, stage: record.status, reason: "(the stored state cannot be read)")
        }
        return .unfinished(rollout: record.id, state: record.status)
    }

    /// The version a rollback of `kind` pins when none is given: the newest version
    /// that completed a rollout; when none has, version 0 (the one built into this
    /// bulkhead, which every pool ran before any rollout). Never a version a gate
    /// rejected or one whose rollout never finished.
    public static func defaultTarget(kind: ArtifactKind, rollouts: [RolloutRecord]) -> (version: Int, why: String) {
        let completed = rollouts.filter { $0.kind == kind }.compactMap { record -> (version: Int, rollout: Int)? in
            if case .completed(let id) = outcome(of: record) { return (record.version, id) }
            return nil
        }
        guard let newest = completed.max(by: { $0.version < $1.version }) else {
            return (0, "no \(kind) rollout has completed: the \(kind) built into bulkhead (version 0)")
        }
        return (newest.version, "the newest \(kind) version that completed a rollout (rollout \(newest.rollout))")
    }

    /// Why `version` of `kind` must not be pinned without the operator saying so
    /// explicitly: a gate rejected it. Nil when nothing speaks against it.
    public static func rejection(of version: Int, kind: ArtifactKind, rollouts: [RolloutRecord]) -> String? {
        for record in rollouts where record.kind == kind && record.version == version {
            if case .rejected(let id, let stage, let reason) = outcome(of: record) {
                return "\(kind) v\(version) was rejected by the gate of rollout \(id) at \(stage): \(reason)"
            }
        }
        return nil
    }

    /// Works out what a rollback of `kind` would do, without changing anything.
    ///
    /// - Parameters:
    ///   - version: the version asked for (`--to`); nil: ``defaultTarget(kind:rollouts:)``.
    ///   - allowRejected: whether the operator said explicitly that a version a gate
    ///     rejected may be pinned; without it such a version is refused.
    ///   - running: per pool, the versions of `kind` its workers run now.
    public static func plan(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool, store: some BulkheadStore, running: [String: Set<Int>]
    ) throws -> RollbackPlan {
        try plan(kind: kind, to: version, allowRejected: allowRejected, history: try History.read(store: store), running: running)
    }

    /// Works out what a rollback of `kind` would do from `history`, without changing anything.
    public static func plan(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool, history: History, running: [String: Set<Int>]
    ) throws -> RollbackPlan {
        let rollouts = history.rollouts
        var warnings: [String] = []
        let target: Int
        let why: String
        if let version {
            guard version >= 0 else {
                throw ControlError(.invalid, "--to takes a version of 0 or more, got \(version)")
            }
            guard history.exists(kind, version) else {
                let latest = max(history.latest[kind] ?? 0, history.known[kind]?.max() ?? 0)
                throw ControlError(.notFound, "there is no \(kind) version \(version) (versions 0 to \(latest) exist)")
            }
            if let rejected = rejection(of: version, kind: kind, rollouts: rollouts) {
                guard allowRejected else {
                    throw ControlError(.rejectedVersion, "\(rejected). Pinning it would put on every pool what the gate stopped; nothing was changed. "
                            + "Leave out --to for the newest completed version, or pass --allow-rejected if you mean it")
                }
                warnings.append(rejected)
            }
            target = version
            why = "asked for with --to"
        } else if history.fallback != nil {
            // Without the rollouts, the pools' active versions are what completed rollouts left.
            let active = history.replicaActive[kind] ?? 0
            (target, why) = (active, active == 0
                ? "no completed \(kind) rollout is known to this host: the \(kind) built into bulkhead (version 0)"
                : "the \(kind) version the pools' last completed rollout left active, as this host's replica holds it")
        } else {
            (target, why) = defaultTarget(kind: kind, rollouts: rollouts)
        }
        if let fallback = history.fallback { warnings.append("\(fallback): the choice is made from this host's replica") }
        let pools = running.keys.sorted().map { RollbackPlan.PoolChange(pool: $0, from: (running[$0] ?? []).sorted()) }
        return RollbackPlan(kind: kind, version: target, why: why, pools: pools, aborts: history.running[kind], warnings: warnings)
    }

    /// Per pool, the versions of `kind` its slots run by the replica alone (no host
    /// agent to ask): the pin, else the running rollout's version of each slot, else
    /// the pool's active version.
    public static func storedVersions(kind: ArtifactKind, replica: HostReplica) throws -> [String: Set<Int>] {
        let contents = try replica.contents()
        let machine = contents.rollouts.first { $0.kind == kind }.flatMap { try? JSONDecoder().decode(RolloutMachine.self, from: $0.state) }
        let pinned = try replica.overrides().pinnedVersion(of: kind)
        var result: [String: Set<Int>] = [:]
        for cohort in try replica.knownGoodCohorts() {
            let pool = cohort.configuration.name
            let usual = contents.activeVersions.first { $0.kind == kind && $0.pool == pool }?.version ?? 0
            let workers = (try replica.workerCount(ofPool: pool)) ?? cohort.configuration.workers
            result[pool] = Set((0..<max(1, workers)).map { pinned ?? machine?.version(forPool: pool, slot: $0) ?? usual })
        }
        return result
    }

    // MARK: - Acting

    /// Stops (or lets go of) every rollout's advance on this host. Rollbacks still happen.
    public static func setFrozen(_ frozen: Bool, replica: HostReplica, actor: String) throws {
        try replica.setFrozen(frozen, actor: actor)
    }

    /// Pins every pool of this host to `version` of `kind` in its replica; returns the
    /// version. `version` is checked as ``plan(kind:to:allowRejected:history:running:)``
    /// checks it (a version a gate rejected needs `allowRejected`). The running rollout
    /// of the kind is not written here: the host stops following it at once (the pin
    /// wins), and the driver, reading the pin, aborts it.
    @discardableResult
    public static func rollback(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool = false, history: History, replica: HostReplica,
        content: (Int) -> String?, actor: String
    ) throws -> Int {
        let target = try plan(kind: kind, to: version, allowRejected: allowRejected, history: history, running: [:]).version
        // The content first, so a slot started later runs the pin without the control store.
        if target > 0, let text = content(target) {
            try replica.keepArtifact(ReplicaArtifact(kind: kind, version: target, content: text))
        }
        try replica.setPin(kind, version: target, actor: actor)
        _ = try replica.appendAudit(
            actor: actor, action: AuditAction("break-glass.rollback"), subject: kind.rawValue,
            detail: "{\"kind\":\"\(kind.rawValue)\",\"version\":\(target)}")
        return target
    }

    /// Lets go of the pin of `kind` on this host. What runs does not change: the
    /// pinned version becomes every pool's active one in the replica (a policy's, its
    /// own cohort's pools': so the release ships nothing), until the feed brings a new active version (a rollout of the
    /// kind completing). Returns the version that was pinned.
    @discardableResult
    public static func unpin(kind: ArtifactKind, replica: HostReplica, pools: [String], actor: String) throws -> Int {
        guard let pinned = try replica.overrides().pinnedVersion(of: kind) else {
            throw ControlError(.notPinned, "the \(kind) is not pinned on this host; nothing was changed")
        }
        // A policy version is one cohort's: its pin held that cohort's pools alone (the
        // others ran their own active policies), and only they keep it.
        var kept = pools
        if kind == .policy, pinned > 0 {
            let named = (try? replica.artifactContent(kind: .policy, version: pinned)).flatMap { $0 }
                .flatMap { try? CohortPolicy.parse($0).cohort }
            kept = pools.filter { $0 == named }
        }
        // The active versions first: a failure half-way leaves the pin in place.
        try replica.keepActiveVersion(pinned, of: kind, pools: kept, actor: actor)
        try replica.setPin(kind, version: nil, actor: actor)
        _ = try replica.appendAudit(
            actor: actor, action: AuditAction("break-glass.unpin"), subject: kind.rawValue,
            detail: "{\"kind\":\"\(kind.rawValue)\",\"version\":\(pinned)}")
        return pinned
    }

    /// The host's freeze and pins, and the unfinished rollouts (from `history`).
    public static func status(replica: HostReplica, history: History?) throws -> Status {
        let overrides = try replica.overrides()
        var running: [String: String] = [:]
        for (kind, text) in history?.running ?? [:] { running[kind.rawValue] = text }
        return Status(frozen: overrides.isFrozen, pins: pins(overrides), running: running)
    }

    /// The pinned version of each pinned kind, keyed by kind name.
    public static func pins(_ overrides: HostOverrides) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: overrides.pins.map { ($0.key.rawValue, $0.value.version) })
    }

    /// Brings a control store's freeze and pins from before break glass moved into
    /// the replica over, once (see ``HostReplica/importControlStoreOverrides(frozen:pins:actor:)``).
    @discardableResult
    public static func importLegacy(from store: some SettingsStore, into replica: HostReplica) throws -> Bool {
        var pins: [ArtifactKind: Int] = [:]
        for kind in ArtifactKind.allCases {
            if let version = try store.legacyPinnedVersion(of: kind) { pins[kind] = version }
        }
        return try replica.importControlStoreOverrides(frozen: try store.legacyFrozen(), pins: pins, actor: "break-glass.import")
    }

    /// Who is acting: the login name and, when set, `SUDO_USER`.
    public static func actor() -> String {
        let environment = ProcessInfo.processInfo.environment
        let user = environment["SUDO_USER"] ?? environment["USER"] ?? environment["LOGNAME"] ?? "uid \(getuid())"
        return "break-glass:\(user)"
    }
}
