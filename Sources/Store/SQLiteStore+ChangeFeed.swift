import BulkheadCore
import Foundation
import GRDB

// MARK: - The change feed

extension SQLiteStore {
    /// Changes kept in the feed; older ones are pruned. A host agent further behind
    /// than this copies everything once instead.
    public static let retainedChanges = 100_000

    /// Appends `change` to the feed inside the caller's transaction, so the change and
    /// its feed row commit together or not at all.
    func recordChange(_ db: Database, _ change: StoreChange, at: Date) throws {
        try Self.insertChange(db, change, at: at)
        let revision = Int(db.lastInsertedRowID)
        // Pruned every 1,000 revisions, in the transaction that crossed the mark: the
        // delete is bounded (1,000 rows) and needs no timer.
        if revision % 1000 == 0, revision > Self.retainedChanges {
            try db.execute(sql: "DELETE FROM changes WHERE revision <= ?", arguments: [revision - Self.retainedChanges])
        }
    }

    /// The newest revision and the oldest one kept.
    public func feedBounds() throws -> FeedBounds {
        try read("read the change feed") { db in try Self.feedBounds(db) }
    }

    /// The changes after `revision`, oldest first, at most `limit` (1...10,000).
    public func changes(after revision: Int, limit: Int) throws -> [FeedEntry] {
        try Self.checkFeedLimit(limit)
        return try read("read the change feed") { db in try Self.changes(db, after: revision, limit: limit) }
    }

    // MARK: Shared with the read-only follower

    static func checkFeedLimit(_ limit: Int) throws {
        guard (1...10_000).contains(limit) else {
            throw StoreError.invalidArgument("a change-feed batch is 1 to 10000 changes, got \(limit)")
        }
    }

    static func feedBounds(_ db: Database) throws -> FeedBounds {
        // sqlite_sequence keeps the highest revision ever handed out, even when the
        // newest rows are gone; it has no row before the first change.
        let latest = try Int.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'changes'") ?? 0
        let oldest = try Int.fetchOne(db, sql: "SELECT MIN(revision) FROM changes")
        return FeedBounds(latest: latest, oldest: oldest)
    }

    static func changes(_ db: Database, after revision: Int, limit: Int) throws -> [FeedEntry] {
        try Row.fetchAll(
            db, sql: "SELECT * FROM changes WHERE revision > ? ORDER BY revision LIMIT ?", arguments: [revision, limit]
        ).map(FeedEntry.init(row:))
    }

    private static func insertChange(_ db: Database, _ change: StoreChange, at: Date) throws {
        var customer: String?
        var name: String?
        var artifactKind: String?
        var pool: String?
        var rolloutID: Int?
        var setting: String?
        let kind: String
        switch change {
        case .customer(let value):
            kind = "customer"
            customer = value
        case .script(let owner, let script):
            kind = "script"
            customer = owner
            name = script
        case .activeArtifact(let artifact, let target):
            kind = "active-artifact"
            artifactKind = artifact.rawValue
            pool = target
        case .rollout(let id):
            kind = "rollout"
            rolloutID = id
        case .setting(let key):
            kind = "setting"
            setting = key
        }
        try db.execute(
            sql: """
                INSERT INTO changes (kind, customer, name, artifact_kind, pool, rollout_id, setting, at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [kind, customer, name, artifactKind, pool, rolloutID, setting, at])
    }
}

extension FeedEntry {
    init(row: Row) throws {
        let revision = try row.decode(Int.self, forColumn: "revision")
        let kind = try row.decode(String.self, forColumn: "kind")
        func required<T: DatabaseValueConvertible>(_ column: String, _ type: T.Type) throws -> T {
            guard let value = try row.decode(T?.self, forColumn: column) else {
                throw UnreadableValue(what: "change \(revision)", detail: "a \(kind) change without its \(column)")
            }
            return value
        }
        let change: StoreChange
        switch kind {
        case "customer":
            change = .customer(try required("customer", String.self))
        case "script":
            change = .script(customer: try required("customer", String.self), name: try required("name", String.self))
        case "active-artifact":
            change = .activeArtifact(try ArtifactKind(row: row, column: "artifact_kind"), pool: try required("pool", String.self))
        case "rollout":
            change = .rollout(try required("rollout_id", Int.self))
        case "freeze":
            // Written before break glass moved into the hosts' replicas: a setting
            // no host follows any more.
            change = .setting(SettingKey.frozen)
        case "pin":
            change = .setting(SettingKey.pinnedVersion(try ArtifactKind(row: row, column: "artifact_kind")))
        case "setting":
            change = .setting(try required("setting", String.self))
        default:
            // Written by a newer build: refused on open (its migration is unknown), so
            // only a damaged row gets here.
            throw UnreadableValue(what: "change \(revision)", detail: "unknown kind \(kind.debugDescription)")
        }
        self.init(revision: revision, change: change, at: try row.decode(Date.self, forColumn: "at"))
    }
}
