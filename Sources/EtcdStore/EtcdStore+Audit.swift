import Etcd
import Foundation
import Store

// MARK: - AuditLog

extension EtcdStore {
    /// Appends an event from outside the store (break glass, automatic rollbacks).
    public func appendAudit(actor: String, action: AuditAction, subject: String, detail: String) throws -> AuditEvent {
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkAuditEvent(action: action, subject: subject, detail: detail)
        return try write("append to the audit log") { attempt in
            try await attempt.audit(at: self.now(), actor: actor, action: action, subject: subject, detailJSON: detail)
        }
    }

    /// Events after `id`, oldest first, at most `limit`.
    public func auditEvents(after id: Int, limit: Int) throws -> [AuditEvent] {
        try StoreArguments.checkAuditLimit(limit)
        return try read("read the audit log") { reader in
            // Ids have at most 16 digits; past them there is nothing.
            guard id < 9_999_999_999_999_999 else { return [] }
            let from = Keys.auditEvent(max(id, 0) + 1)
            let end = String(decoding: EtcdKeyRange.prefixEnd(Array(Keys.auditEvents.utf8)), as: UTF8.self)
            return try await reader.range(from: from, to: end, limit: Int64(limit)).map(self.decodeAudit)
        }
    }

    /// The newest event's id, 0 when there is none.
    public func latestAuditEventID() throws -> Int {
        try read("read the audit log") { reader in
            (try await reader.value(Keys.auditNext, as: Counter.self)?.next ?? 1) - 1
        }
    }
}
