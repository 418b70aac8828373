/// The append-only audit log: the store writes a row for each of its changes, and the
/// rest of bulkhead appends its own (break-glass actions, automatic rollbacks).
public protocol AuditLog: Sendable {
    /// Appends an event. `detail` must be a JSON text.
    func appendAudit(actor: String, action: AuditAction, subject: String, detail: String) throws -> AuditEvent

    /// Events with an id above `id`, oldest first, at most `limit` (1...10000).
    ///
    /// `events --follow` calls it again with the last id it printed.
    func auditEvents(after id: Int, limit: Int) throws -> [AuditEvent]

    /// The id of the newest event, 0 when the log is empty: where `--follow` starts.
    func latestAuditEventID() throws -> Int
}
