import Foundation
import GRDB
import Store
import Testing

@Suite struct AuditLogTests {
    @Test func theLogIsAppendOnlyInTheDatabaseItself() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.appendAudit(actor: "admin", action: AuditAction("test"), subject: "host", detail: "{}")
        let raw = try DatabaseQueue(path: directory.storePath)
        #expect(throws: DatabaseError.self) { try raw.write { db in try db.execute(sql: "UPDATE audit SET actor = 'mallory'") } }
        #expect(throws: DatabaseError.self) { try raw.write { db in try db.execute(sql: "DELETE FROM audit") } }
        try raw.close()
        #expect(try store.auditEvents(after: 0, limit: 10).map(\.actor) == ["admin"])
    }
}
