import Foundation
import GRDB

// MARK: - AuditLog

extension SQLiteStore {
    /// Appends an event from outside the store (break glass, automatic rollbacks).
    public func appendAudit(actor: String, action: AuditAction, subject: String, detail: String) throws -> AuditEvent {
        try checkActor(actor)
        try StoreArguments.checkAuditEvent(action: action, subject: subject, detail: detail)
        return try write("append to the audit log") { db in
            try insertAudit(db, at: now(), actor: actor, action: action, subject: subject, detailJSON: detail)
        }
    }

    /// Events after `id`, oldest first, at most `limit`.
    public func auditEvents(after id: Int, limit: Int) throws -> [AuditEvent] {
        try StoreArguments.checkAuditLimit(limit)
        return try read("read the audit log") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", arguments: [id, limit])
                .map(AuditEvent.init(row:))
        }
    }

    /// The newest event's id, 0 when there is none.
    public func latestAuditEventID() throws -> Int {
        try read("read the audit log") { db in
            try Int.fetchOne(db, sql: "SELECT MAX(id) FROM audit") ?? 0
        }
    }
}

extension AuditEvent {
    init(row: Row) throws {
        self.init(
            id: try row.decode(Int.self, forColumn: "id"),
            at: try row.decode(Date.self, forColumn: "at"),
            actor: try row.decode(String.self, forColumn: "actor"),
            action: AuditAction(try row.decode(String.self, forColumn: "action")),
            subject: try row.decode(String.self, forColumn: "subject"),
            detail: try row.decode(String.self, forColumn: "detail"))
    }
}
