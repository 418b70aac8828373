import BulkheadCore
import Foundation
import GRDB

/// A running rollout as the host's replica keeps it: the record's identity and its
/// encoded machine (a `RolloutMachine` of the Rollout module, which this module does
/// not link), copied from the control store through the feed.
public struct ReplicaRollout: Sendable, Equatable {
    /// The rollout's id.
    public var id: Int
    /// The kind it rolls out (one running rollout per kind).
    public var kind: ArtifactKind
    /// The encoded machine, as the driver last saved it.
    public var state: Data

    /// Creates a value.
    public init(id: Int, kind: ArtifactKind, state: Data) {
        self.id = id
        self.kind = kind
        self.state = state
    }
}

/// The version of an artifact kind that a pool runs when no rollout or host pin says
/// otherwise; nil `version` when the control store no longer records one.
public struct ReplicaActiveVersion: Sendable, Hashable {
    /// The kind.
    public var kind: ArtifactKind
    /// The pool.
    public var pool: String
    /// The version, or nil when cleared.
    public var version: Int?

    /// Creates a value.
    public init(kind: ArtifactKind, pool: String, version: Int?) {
        self.kind = kind
        self.pool = pool
        self.version = version
    }
}

/// One artifact version's content, kept so a slot can be started on it without
/// the control store.
public struct ReplicaArtifact: Sendable, Equatable {
    /// The kind.
    public var kind: ArtifactKind
    /// The version (1 or more; 0 ships with the build and is never stored).
    public var version: Int
    /// The content: a runtime's Lua, a rules JSON, a binary's path.
    public var content: String

    /// Creates a value.
    public init(kind: ArtifactKind, version: Int, content: String) {
        self.kind = kind
        self.version = version
        self.content = content
    }
}

extension HostReplica {
    // MARK: - Artifacts and rollouts (the stage runner's)

    /// The content of `version` of `kind`, or nil when the replica does not hold it.
    public func artifactContent(kind: ArtifactKind, version: Int) throws -> String? {
        try read("read \(kind.rawValue) artifact \(version) from the replica") { db in
            try Row.fetchOne(
                db, sql: "SELECT CAST(content AS BLOB) AS content FROM artifacts WHERE kind = ? AND version = ?",
                arguments: [kind.rawValue, version]
            ).map { try SQLiteStore.wholeText($0, column: "content") }
        }
    }

    /// Writes the artifact, rollout and active-version rows of `update` (inside
    /// `apply`'s transaction, so they reflect the same revision as the rest).
    static func applyArtifacts(_ update: ReplicaUpdate, _ db: Database) throws {
        if update.isFullCopy {
            try db.execute(sql: "DELETE FROM active_artifacts")
            try db.execute(sql: "DELETE FROM running_rollouts")
        }
        for artifact in update.artifacts {
            // As bytes with their length: see `SQLiteStore.wholeText(_:column:)`.
            try db.execute(
                sql: "INSERT OR REPLACE INTO artifacts (kind, version, content) VALUES (?, ?, CAST(? AS TEXT))",
                arguments: [artifact.kind.rawValue, artifact.version, Data(artifact.content.utf8)])
        }
        for active in update.activeVersions {
            if let version = active.version {
                try db.execute(
                    sql: """
                        INSERT INTO active_artifacts (kind, pool, version) VALUES (?, ?, ?)
                        ON CONFLICT (kind, pool) DO UPDATE SET version = excluded.version
                        """,
                    arguments: [active.kind.rawValue, active.pool, version])
            } else {
                try db.execute(
                    sql: "DELETE FROM active_artifacts WHERE kind = ? AND pool = ?", arguments: [active.kind.rawValue, active.pool])
            }
        }
        for id in update.endedRollouts {
            try db.execute(sql: "DELETE FROM running_rollouts WHERE rollout = ?", arguments: [id])
        }
        for rollout in update.rollouts {
            try db.execute(
                sql: """
                    INSERT INTO running_rollouts (kind, rollout, state) VALUES (?, ?, ?)
                    ON CONFLICT (kind) DO UPDATE SET rollout = excluded.rollout, state = excluded.state
                    """,
                arguments: [rollout.kind.rawValue, rollout.id, rollout.state])
        }
    }

    /// The running rollouts and active versions the replica holds.
    static func readArtifacts(_ db: Database) throws -> (rollouts: [ReplicaRollout], active: [ReplicaActiveVersion]) {
        let rollouts = try Row.fetchAll(db, sql: "SELECT kind, rollout, state FROM running_rollouts ORDER BY rollout").map { row in
            ReplicaRollout(
                id: try row.decode(Int.self, forColumn: "rollout"), kind: try ArtifactKind(row: row, column: "kind"),
                state: try row.decode(Data.self, forColumn: "state"))
        }
        let active = try Row.fetchAll(db, sql: "SELECT kind, pool, version FROM active_artifacts ORDER BY kind, pool").map { row in
            ReplicaActiveVersion(
                kind: try ArtifactKind(row: row, column: "kind"), pool: try row.decode(String.self, forColumn: "pool"),
                version: try row.decode(Int.self, forColumn: "version"))
        }
        return (rollouts, active)
    }
}

extension ChangeFeedReader {
    /// Adds to `update` what a `.rollout` or `.activeArtifact` change names:
    /// the rollout (running, or ended), the pool's active version, and the content of
    /// every artifact version these make a slot run.
    static func readStageChanges(_ db: Database, changes: [StoreChange], into update: inout ReplicaUpdate) throws {
        var versions: Set<ArtifactVersionKey> = []
        for change in changes {
            switch change {
            case .rollout(let id):
                guard let row = try Row.fetchOne(
                    db, sql: "SELECT id, kind, version, from_version, finished, state FROM rollouts WHERE id = ?", arguments: [id])
                else {
                    update.endedRollouts.append(id)
                    continue
                }
                let kind = try ArtifactKind(row: row, column: "kind")
                if try row.decode(Bool.self, forColumn: "finished") {
                    update.endedRollouts.append(id)
                } else {
                    update.rollouts.removeAll { $0.kind == kind }
                    update.rollouts.append(ReplicaRollout(id: id, kind: kind, state: try row.decode(Data.self, forColumn: "state")))
                }
                versions.insert(ArtifactVersionKey(kind: kind, version: try row.decode(Int.self, forColumn: "version")))
                versions.insert(ArtifactVersionKey(kind: kind, version: try row.decode(Int.self, forColumn: "from_version")))
            case .activeArtifact(let kind, let pool):
                let version = try intSetting(db, SettingKey.activeVersion(kind, pool: pool))
                update.activeVersions.removeAll { $0.kind == kind && $0.pool == pool }
                update.activeVersions.append(ReplicaActiveVersion(kind: kind, pool: pool, version: version))
                if let version { versions.insert(ArtifactVersionKey(kind: kind, version: version)) }
            case .customer, .script, .setting:
                break
            }
        }
        for key in versions.sorted() where key.version >= 1 {
            if let content = try Row.fetchOne(
                db, sql: "SELECT CAST(content AS BLOB) AS content FROM artifacts WHERE kind = ? AND version = ?",
                arguments: [key.kind.rawValue, key.version]
            ).map({ try SQLiteStore.wholeText($0, column: "content") }) {
                update.artifacts.append(ReplicaArtifact(kind: key.kind, version: key.version, content: content))
            }
        }
    }

    /// For a full copy: every running rollout and every active version.
    static func allStageChanges(_ db: Database) throws -> [StoreChange] {
        var changes: [StoreChange] = try Int.fetchAll(db, sql: "SELECT id FROM rollouts WHERE finished = 0 ORDER BY id").map { .rollout($0) }
        for key in try String.fetchAll(db, sql: "SELECT key FROM settings ORDER BY key") {
            let change = StoreChange.ofSetting(key)
            switch change {
            case .activeArtifact: changes.append(change)
            default: break
            }
        }
        return changes
    }

    private static func intSetting(_ db: Database, _ key: String) throws -> Int? {
        guard let text = try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]) else { return nil }
        guard let value = Int(text) else { throw StoreError.unreadableSetting(key, value: text, expected: "a version number") }
        return value
    }
}

/// An artifact version, as a set member.
private struct ArtifactVersionKey: Hashable, Comparable {
    var kind: ArtifactKind
    var version: Int

    static func < (lhs: Self, rhs: Self) -> Bool { (lhs.kind.rawValue, lhs.version) < (rhs.kind.rawValue, rhs.version) }
}
