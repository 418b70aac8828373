import BulkheadCore
import Foundation
import GRDB

// MARK: - RolloutStore

extension SQLiteStore {
    /// Creates a rollout; refused while another rollout of the kind is unfinished.
    public func createRollout(
        kind: ArtifactKind, version: Int, fromVersion: Int, status: String, state: Data, actor: String
    ) throws -> RolloutRecord {
        try checkActor(actor)
        try checkStatus(status)
        try StoreArguments.checkFromVersion(fromVersion)
        return try write("create a rollout of \(kind) artifact \(version)") { db in
            let exists = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM artifacts WHERE kind = ? AND version = ?)",
                arguments: [kind.rawValue, version]) ?? false
            guard exists else { throw StoreError.artifactNotFound(kind, version) }
            // Checked here for a clear error; the partial unique index
            // rollouts_one_unfinished_per_kind would refuse the insert anyway.
            if let running = try Self.fetchRunning(db, kind: kind) {
                throw StoreError.rolloutInProgress(kind, id: running.id)
            }
            let at = now()
            try db.execute(
                sql: """
                    INSERT INTO rollouts (kind, version, from_version, status, finished, state, created_at, updated_at, created_by)
                    VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)
                    """,
                arguments: [kind.rawValue, version, fromVersion, status, state, at, at, actor])
            let record = RolloutRecord(
                id: Int(db.lastInsertedRowID), kind: kind, version: version, fromVersion: fromVersion, status: status,
                finished: false, state: state, createdAt: at, updatedAt: at, createdBy: actor)
            try insertAudit(
                db, at: at, actor: actor, action: .rolloutCreated, subject: "rollout/\(record.id)",
                detail: [
                    "kind": .string(kind.rawValue), "version": .int(version), "from_version": .int(fromVersion),
                    "status": .string(status),
                ])
            try recordChange(db, .rollout(record.id), at: at)
            return record
        }
    }

    /// Replaces a rollout's status and state; a finished rollout stays finished.
    public func updateRollout(id: Int, status: String, state: Data, finished: Bool, actor: String) throws -> RolloutRecord {
        try checkActor(actor)
        try checkStatus(status)
        return try write("update rollout \(id)") { db in
            guard var record = try Self.fetchRollout(db, id: id) else { throw StoreError.rolloutNotFound(id) }
            if record.finished, !finished { throw StoreError.rolloutFinished(id) }
            let previousStatus = record.status
            record.status = status
            record.state = state
            record.finished = finished
            record.updatedAt = now()
            try db.execute(
                sql: "UPDATE rollouts SET status = ?, state = ?, finished = ?, updated_at = ? WHERE id = ?",
                arguments: [status, state, finished, record.updatedAt, id])
            try insertAudit(
                db, at: record.updatedAt, actor: actor, action: .rolloutUpdated, subject: "rollout/\(id)",
                detail: [
                    "kind": .string(record.kind.rawValue), "version": .int(record.version),
                    "previous_status": .string(previousStatus), "status": .string(status), "finished": .bool(finished),
                ])
            try recordChange(db, .rollout(id), at: record.updatedAt)
            return record
        }
    }

    /// One rollout, or nil.
    public func rollout(id: Int) throws -> RolloutRecord? {
        try read("read rollout \(id)") { db in try Self.fetchRollout(db, id: id) }
    }

    /// The newest rollouts first, at most `limit`.
    public func rollouts(limit: Int) throws -> [RolloutRecord] {
        try StoreArguments.checkRolloutLimit(limit)
        return try read("list rollouts") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", arguments: [limit])
                .map(RolloutRecord.init(row:))
        }
    }

    /// The unfinished rollout of `kind`, or nil.
    public func runningRollout(kind: ArtifactKind) throws -> RolloutRecord? {
        try read("read the running \(kind) rollout") { db in try Self.fetchRunning(db, kind: kind) }
    }

    private static func fetchRollout(_ db: Database, id: Int) throws -> RolloutRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE id = ?", arguments: [id]).map(RolloutRecord.init(row:))
    }

    private static func fetchRunning(_ db: Database, kind: ArtifactKind) throws -> RolloutRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE kind = ? AND finished = 0", arguments: [kind.rawValue])
            .map(RolloutRecord.init(row:))
    }

    private func checkStatus(_ status: String) throws {
        try StoreArguments.checkRolloutStatus(status)
    }
}

extension RolloutRecord {
    init(row: Row) throws {
        self.init(
            id: try row.decode(Int.self, forColumn: "id"),
            kind: try ArtifactKind(row: row, column: "kind"),
            version: try row.decode(Int.self, forColumn: "version"),
            fromVersion: try row.decode(Int.self, forColumn: "from_version"),
            status: try row.decode(String.self, forColumn: "status"),
            finished: try row.decode(Bool.self, forColumn: "finished"),
            state: try row.decode(Data.self, forColumn: "state"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"),
            updatedAt: try row.decode(Date.self, forColumn: "updated_at"),
            createdBy: try row.decode(String.self, forColumn: "created_by"))
    }
}
