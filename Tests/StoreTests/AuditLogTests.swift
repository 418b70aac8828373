import Foundation
import GRDB
import Store
import Testing

@Suite struct AuditLogTests {
    @Test func everyChangeIsAudited() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("acme"), actor: "cli")
        _ = try store.moveCustomer("acme", toCohort: "pro", actor: "admin")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "customer:acme")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "customer:acme")
        _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "customer:acme")
        _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: "kills", actor: "supervisor")
        _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: false, reason: nil, actor: "admin")
        try store.deleteScript(customer: "acme", name: "hello", actor: "customer:acme")
        _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
        let rollout = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: Data(), actor: "admin")
        _ = try store.updateRollout(id: rollout.id, status: "succeeded", state: Data(), finished: true, actor: "rollout")
        try store.setSetting(SettingKey.frozen, to: "true", actor: "break-glass")
        try store.setSetting(SettingKey.frozen, to: nil, actor: "break-glass")

        let events = try store.auditEvents(after: 0, limit: 100)
        #expect(events.map(\.action.rawValue) == [
            "customer.add", "customer.move", "script.put", "script.put", "script.rollback", "script.quarantine",
            "script.unquarantine", "script.delete", "artifact.put", "rollout.create", "rollout.update", "setting.set",
            "setting.clear",
        ])
        #expect(events.map(\.subject) == [
            "customer/acme", "customer/acme", "script/acme/hello", "script/acme/hello", "script/acme/hello",
            "script/acme/hello", "script/acme/hello", "script/acme/hello", "artifact/rules/1", "rollout/1", "rollout/1",
            "setting/frozen", "setting/frozen",
        ])
        #expect(events.map(\.actor).first == "cli")
        #expect(events.map(\.id) == Array(1...13))
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.at < $1.at })

        // Details are JSON objects with the numbers that matter.
        let put = try #require(events.first { $0.action == .scriptPut })
        let detail = try #require(try JSONSerialization.jsonObject(with: Data(put.detail.utf8)) as? [String: Any])
        #expect(detail["version"] as? Int == 1)
        #expect(detail["sha256"] as? String == SHA256Hasher.hex("-- 1"))
        #expect(events[4].detail == #"{"from":2,"released_quarantine":false,"to":1}"#)
        #expect(events[1].detail == #"{"from":"free","to":"pro"}"#)
        // The token hash never reaches the log.
        #expect(!events.contains { $0.detail.contains(hash("acme")) })
    }

    @Test func aFailedChangeLeavesNoEvent() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("acme"), actor: "cli")
        _ = storeError { _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("other"), actor: "cli") }
        _ = storeError { _ = try store.rollbackScript(customer: "acme", name: "ghost", to: nil, actor: "cli") }
        _ = storeError { _ = try store.createRollout(kind: .rules, version: 7, fromVersion: 0, status: "running", state: Data(), actor: "cli") }
        #expect(try auditActions(store) == ["customer.add"])
    }

    @Test func appendAndFollow() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        #expect(try store.latestAuditEventID() == 0)
        #expect(try store.auditEvents(after: 0, limit: 10).isEmpty)

        let first = try store.appendAudit(
            actor: "break-glass", action: AuditAction("break-glass.freeze"), subject: "host", detail: #"{"reason":"incident 42"}"#)
        #expect(first.id == 1)
        #expect(first.at == SteppingClock.start)
        for index in 2...5 {
            _ = try store.appendAudit(actor: "rollout", action: AuditAction("rollout.stage"), subject: "rollout/1", detail: "{\"stage\":\(index)}")
        }
        #expect(try store.latestAuditEventID() == 5)
        #expect(try store.auditEvents(after: 0, limit: 2).map(\.id) == [1, 2])
        // What `events --follow` does: ask again after the last id it printed.
        #expect(try store.auditEvents(after: 2, limit: 100).map(\.id) == [3, 4, 5])
        #expect(try store.auditEvents(after: 5, limit: 100).isEmpty)
        #expect(try store.auditEvents(after: 0, limit: 1).first == first)

        #expect(storeError { _ = try store.appendAudit(actor: "x", action: AuditAction("a"), subject: "s", detail: "{oops") }?.kind == .invalid)
        #expect(storeError { _ = try store.appendAudit(actor: "", action: AuditAction("a"), subject: "s", detail: "{}") }?.kind == .invalid)
        #expect(storeError { _ = try store.auditEvents(after: 0, limit: 0) }?.kind == .invalid)
    }

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
