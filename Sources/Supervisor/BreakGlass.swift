import BulkheadCore
import Foundation
import Rollout
import Store

/// Break glass: the operator's instant path, with no circular dependency. It works
/// on the store alone — the supervisor applies what the store says (on start, and
/// at once when it is up and asked over the admin socket) — needs neither the HTTP
/// API nor a token, and every action is in the audit log with who and when.
public enum BreakGlass {
    /// What `break-glass status` shows.
    public struct Status: Codable, Sendable {
        /// Whether rollouts are frozen.
        public var frozen: Bool
        /// Pinned versions per artifact kind.
        public var pinned: [String: Int]
        /// Rollouts not finished, `kind: id (state)`.
        public var running: [String: String]
    }

    /// Stops (or lets go of) every rollout's advance. Automatic rollbacks still happen.
    public static func setFrozen(_ frozen: Bool, store: some BulkheadStore, actor: String) throws {
        try store.setFrozen(frozen, actor: actor)
    }

    /// Pins every pool to `version` of `kind` (nil: the version before the current
    /// one of the first pool) and aborts any rollout of that kind. Returns the version.
    @discardableResult
    public static func rollback(kind: ArtifactKind, to version: Int?, store: some BulkheadStore, pools: [String], actor: String) throws -> Int {
        let target: Int
        if let version {
            target = version
        } else {
            let current = (try store.pinnedVersion(of: kind))
                ?? pools.compactMap { try? store.activeVersion(of: kind, inPool: $0) }.max() ?? 0
            target = max(0, current - 1)
        }
        if target > 0 {
            guard try store.artifact(kind: kind, version: target) != nil else {
                throw ControlError(status: 404, kind: "not-found", message: "no \(kind) version \(target) in the store")
            }
        }
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

    /// Frozen flag, pins and unfinished rollouts.
    public static func status(store: some BulkheadStore) throws -> Status {
        var pinned: [String: Int] = [:]
        var running: [String: String] = [:]
        for kind in ArtifactKind.allCases {
            if let version = try store.pinnedVersion(of: kind) { pinned[kind.rawValue] = version }
            if let record = try store.runningRollout(kind: kind) { running[kind.rawValue] = "\(record.id) (\(record.status))" }
        }
        return Status(frozen: try store.isFrozen(), pinned: pinned, running: running)
    }

    /// Who is acting: the login name and, when set, `SUDO_USER`.
    public static func actor() -> String {
        let environment = ProcessInfo.processInfo.environment
        let user = environment["SUDO_USER"] ?? environment["USER"] ?? environment["LOGNAME"] ?? "uid \(getuid())"
        return "break-glass:\(user)"
    }
}
