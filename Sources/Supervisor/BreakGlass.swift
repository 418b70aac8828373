import BulkheadCore
import Foundation
import Rollout
import Store

/// Break glass: the operator's instant path, with no circular dependency. It works
/// on the store alone — the supervisor applies what the store says (on start, and
/// at once when it is up and asked over the admin socket) — needs neither the HTTP
/// API nor a token, and every action is in the audit log with who and when.
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

    /// Stops (or lets go of) every rollout's advance. Automatic rollbacks still happen.
    public static func setFrozen(_ frozen: Bool, store: some BulkheadStore, actor: String) throws {
        try store.setFrozen(frozen, actor: actor)
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
        let rollouts = try store.rollouts(limit: Int(Int32.max))
        var warnings: [String] = []
        let target: Int
        let why: String
        if let version {
            guard version >= 0 else {
                throw ControlError(.invalid, "--to takes a version of 0 or more, got \(version)")
            }
            if version > 0, try store.artifact(kind: kind, version: version) == nil {
                let latest = try store.latestArtifact(kind: kind)?.version ?? 0
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
        } else {
            (target, why) = defaultTarget(kind: kind, rollouts: rollouts)
        }
        let aborts = try store.runningRollout(kind: kind).map { "\($0.id) (\($0.status))" }
        let pools = running.keys.sorted().map { RollbackPlan.PoolChange(pool: $0, from: (running[$0] ?? []).sorted()) }
        return RollbackPlan(kind: kind, version: target, why: why, pools: pools, aborts: aborts, warnings: warnings)
    }

    /// Per pool, the versions of `kind` its slots run by the store alone (no
    /// supervisor to ask): the rollout's version of each slot while one runs, else
    /// the pin, else the pool's current version.
    public static func storedVersions(kind: ArtifactKind, store: some BulkheadStore) throws -> [String: Set<Int>] {
        let machine = try store.runningRollout(kind: kind).flatMap { try? JSONDecoder().decode(RolloutMachine.self, from: $0.state) }
        let pinned = try store.pinnedVersion(of: kind)
        var result: [String: Set<Int>] = [:]
        for cohort in try store.knownGoodCohorts() {
            let pool = cohort.configuration.name
            let usual = try pinned ?? store.activeVersion(of: kind, inPool: pool) ?? 0
            result[pool] = Set((0..<max(1, cohort.configuration.workers)).map { machine?.version(forPool: pool, slot: $0) ?? usual })
        }
        return result
    }

    // MARK: - Acting

    /// Pins every pool to `version` of `kind` and aborts any rollout of that kind;
    /// returns the version. `version` is checked as ``plan(kind:to:allowRejected:store:running:)``
    /// checks it (a version a gate rejected needs `allowRejected`).
    @discardableResult
    public static func rollback(
        kind: ArtifactKind, to version: Int?, allowRejected: Bool = false, store: some BulkheadStore, actor: String
    ) throws -> Int {
        let target = try plan(kind: kind, to: version, allowRejected: allowRejected, store: store, running: [:]).version
        if let record = try store.runningRollout(kind: kind) {
            var status = "aborted by break-glass"
            var state = record.state
            if var machine = try? JSONDecoder().decode(RolloutMachine.self, from: record.state) {
                _ = try? machine.abort(now: Date().timeIntervalSince1970, by: actor)
                state = (try? JSONEncoder().encode(machine)) ?? record.state
                status = "aborted"
            }
            _ = try store.updateRollout(id: record.id, status: status, state: state, finished: true, actor: actor)
        }
        try store.setPinnedVersion(target, of: kind, actor: actor)
        _ = try store.appendAudit(
            actor: actor, action: AuditAction("break-glass.rollback"), subject: kind.rawValue,
            detail: "{\"kind\":\"\(kind.rawValue)\",\"version\":\(target)}")
        return target
    }

    /// Lets go of the pin of `kind`. What runs does not change: the pinned version
    /// becomes every pool's current one (so the release itself ships nothing at once),
    /// and the next rollout of the kind starts from it. Returns the version that was pinned.
    @discardableResult
    public static func unpin(kind: ArtifactKind, store: some BulkheadStore, pools: [String], actor: String) throws -> Int {
        guard let pinned = try store.pinnedVersion(of: kind) else {
            throw ControlError(.notPinned, "the \(kind) is not pinned; nothing was changed")
        }
        // The current versions first: a failure half-way leaves the pin in place.
        for pool in pools { try store.setActiveVersion(pinned, of: kind, inPool: pool, actor: actor) }
        try store.setPinnedVersion(nil, of: kind, actor: actor)
        _ = try store.appendAudit(
            actor: actor, action: AuditAction("break-glass.unpin"), subject: kind.rawValue,
            detail: "{\"kind\":\"\(kind.rawValue)\",\"version\":\(pinned)}")
        return pinned
    }

    /// Frozen flag, pins and unfinished rollouts.
    public static func status(store: some BulkheadStore) throws -> Status {
        var running: [String: String] = [:]
        for kind in ArtifactKind.allCases {
            if let record = try store.runningRollout(kind: kind) { running[kind.rawValue] = "\(record.id) (\(record.status))" }
        }
        return Status(frozen: try store.isFrozen(), pins: try pins(store: store), running: running)
    }

    /// The pinned version of each pinned kind.
    public static func pins(store: some SettingsStore) throws -> [String: Int] {
        var pins: [String: Int] = [:]
        for kind in ArtifactKind.allCases {
            if let version = try store.pinnedVersion(of: kind) { pins[kind.rawValue] = version }
        }
        return pins
    }

    /// Who is acting: the login name and, when set, `SUDO_USER`.
    public static func actor() -> String {
        let environment = ProcessInfo.processInfo.environment
        let user = environment["SUDO_USER"] ?? environment["USER"] ?? environment["LOGNAME"] ?? "uid \(getuid())"
        return "break-glass:\(user)"
    }
}
