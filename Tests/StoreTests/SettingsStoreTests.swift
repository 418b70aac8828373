import BulkheadCore
import Foundation
import Store
import Testing

@Suite struct SettingsStoreTests {
    /// The host replica keeps each pool's last known good cohort (the agent that
    /// starts the pools is their only writer).
    @Test func knownGoodCohorts() throws {
        let directory = try TemporaryDirectory()
        let clock = SteppingClock()
        var configuration = SQLiteStoreConfiguration()
        configuration.clock = { clock.now() }
        let store = try HostReplica(path: directory.path + "/host.sqlite", configuration: configuration)
        var free = try cohort("free", order: 1, workers: 2)
        let pro = try cohort("pro", order: 2, workers: 4)
        #expect(try store.knownGood(pool: "free") == nil)

        try store.saveKnownGood(free, actor: "supervisor")
        try store.saveKnownGood(pro, actor: "supervisor")
        let saved = try #require(try store.knownGood(pool: "free"))
        #expect(saved.configuration == free)
        #expect(try store.knownGoodCohorts().map(\.configuration) == [free, pro])

        // Saving it unchanged is not a change.
        let events = try store.latestAuditEventID()
        try store.saveKnownGood(free, actor: "supervisor")
        #expect(try store.latestAuditEventID() == events)
        #expect(try store.knownGood(pool: "free")?.savedAt == saved.savedAt)

        free.workers = 3
        try store.saveKnownGood(free, actor: "supervisor")
        #expect(try store.knownGood(pool: "free")?.configuration.workers == 3)
        #expect(try store.latestAuditEventID() == events + 1)

        free.name = "Free"
        #expect(storeError { try store.saveKnownGood(free, actor: "supervisor") }?.kind == .invalid)
    }
}
