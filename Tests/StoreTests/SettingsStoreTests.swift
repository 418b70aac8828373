import BulkheadCore
import Foundation
import Store
import Testing

@Suite struct SettingsStoreTests {
    @Test func setReadAndClear() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        #expect(try store.setting("color") == nil)
        try store.setSetting("color", to: "blue", actor: "admin")
        try store.setSetting("color", to: "green", actor: "admin")
        try store.setSetting("size.free", to: "3", actor: "admin")
        #expect(try store.setting("color") == "green")
        #expect(try store.settings() == ["color": "green", "size.free": "3"])
        try store.setSetting("color", to: nil, actor: "admin")
        #expect(try store.setting("color") == nil)
        #expect(try store.settings() == ["size.free": "3"])
        #expect(storeError { try store.setSetting("Bad Key", to: "x", actor: "admin") }?.kind == .invalid)
        #expect(storeError { _ = try store.setting(".hidden") }?.kind == .invalid)
    }

    @Test func typedHelpers() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        // The freeze and pins of a store from before break glass moved into the host
        // replica: only read (for the one-time import), never written by bulkhead.
        #expect(try store.legacyFrozen() == false)
        try store.setSetting(SettingKey.frozen, to: "true", actor: "break-glass")
        #expect(try store.legacyFrozen())
        #expect(try store.legacyPinnedVersion(of: .rules) == nil)
        try store.setSetting(SettingKey.pinnedVersion(.rules), to: "4", actor: "break-glass")
        #expect(try store.legacyPinnedVersion(of: .rules) == 4)
        #expect(try store.legacyPinnedVersion(of: .runtime) == nil)

        try store.setActiveVersion(2, of: .runtime, inPool: "free", actor: "rollout")
        try store.setActiveVersion(1, of: .runtime, inPool: "pro", actor: "rollout")
        #expect(try store.activeVersion(of: .runtime, inPool: "free") == 2)
        #expect(try store.activeVersion(of: .runtime, inPool: "pro") == 1)
        #expect(try store.activeVersion(of: .rules, inPool: "free") == nil)
        #expect(try store.setting(SettingKey.activeVersion(.runtime, pool: "free")) == "2")

        try store.setWorkerCount(6, ofPool: "pro", actor: "cli")
        #expect(try store.workerCount(ofPool: "pro") == 6)
        #expect(storeError { try store.setWorkerCount(-1, ofPool: "pro", actor: "cli") }?.kind == .invalid)
        #expect(storeError { _ = try store.workerCount(ofPool: "No Pool") }?.kind == .invalid)
    }

    @Test func aMangledValueIsAnErrorNotACrash() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        try store.setSetting(SettingKey.frozen, to: "maybe", actor: "someone")
        try store.setSetting(SettingKey.pinnedVersion(.binary), to: "three", actor: "someone")
        let frozen = storeError { _ = try store.legacyFrozen() }
        #expect(frozen?.kind == .damaged)
        #expect(frozen?.description.contains("setting frozen holds \"maybe\"") == true)
        #expect(storeError { _ = try store.legacyPinnedVersion(of: .binary) }?.kind == .damaged)
    }

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
