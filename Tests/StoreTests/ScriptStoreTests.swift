import Foundation
import Store
import Testing

@Suite struct ScriptStoreTests {
    /// A store with customers `acme` (pro) and `beta` (free).
    private func storeWithCustomers(_ directory: TemporaryDirectory) throws -> SQLiteStore {
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        _ = try store.addCustomer(name: "beta", cohort: "free", tokenHash: hash("beta"), actor: "cli")
        return store
    }

    @Test func putAndReadBack() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        let source = "function handle(req) return \"h\u{e9}llo \u{2603}\" end\n"
        let put = try store.putScriptVersion(customer: "acme", name: "hello", source: source, actor: "customer:acme")

        #expect(put.version == 1)
        #expect(put.sha256 == SHA256Hasher.hex(source))
        #expect(put.size == source.utf8.count)
        #expect(put.size != source.count)
        #expect(put.createdBy == "customer:acme")

        let read = try store.scriptSource(customer: "acme", name: "hello", version: nil)
        #expect(read.source == source)
        #expect(read.version == put)
        #expect(try store.scriptSource(customer: "acme", name: "hello", version: 1).source == source)

        let summary = try #require(try store.script(customer: "acme", name: "hello"))
        #expect(summary.activeVersion == 1)
        #expect(summary.latestVersion == 1)
        #expect(summary.sha256 == put.sha256)
        #expect(summary.size == put.size)
        #expect(!summary.quarantined)
        #expect(summary.updatedAt == put.createdAt)
        #expect(try store.scriptVersions(customer: "acme", name: "hello") == [put])
    }

    @Test func aSourceWithNulBytesIsStoredWhole() throws {
        // Lua reads a NUL inside a string literal; the store once cut the source at
        // it (28 of 36 bytes kept) while the hash and size covered all of it.
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        let source = "function handle(req) return 'a\u{0}b' end\n\u{0}"
        let put = try store.putScriptVersion(customer: "acme", name: "nul", source: source, actor: "customer:acme")
        #expect(put.size == source.utf8.count)
        #expect(put.sha256 == SHA256Hasher.hex(source.utf8))

        let read = try store.scriptSource(customer: "acme", name: "nul", version: nil)
        #expect(Array(read.source.utf8) == Array(source.utf8), "\(read.source.utf8.count) of \(source.utf8.count) bytes read back")
        #expect(SHA256Hasher.hex(read.source.utf8) == put.sha256)
        let active = try #require(try store.activeScripts().first { $0.spec.name == "nul" })
        #expect(Array(active.spec.source.utf8) == Array(source.utf8))
        #expect(active.sha256 == put.sha256)
    }

    @Test func versionsCountPerScript() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        for round in 1...3 {
            #expect(try store.putScriptVersion(customer: "acme", name: "one", source: "-- \(round)", actor: "c").version == round)
        }
        #expect(try store.putScriptVersion(customer: "acme", name: "two", source: "-- a", actor: "c").version == 1)
        #expect(try store.putScriptVersion(customer: "beta", name: "one", source: "-- b", actor: "c").version == 1)
        #expect(try store.putScriptVersion(customer: "acme", name: "one", source: "-- 4", actor: "c").version == 4)

        let versions = try store.scriptVersions(customer: "acme", name: "one")
        #expect(versions.map(\.version) == [1, 2, 3, 4])
        #expect(versions.map(\.sha256) == ["-- 1", "-- 2", "-- 3", "-- 4"].map(SHA256Hasher.hex))
        #expect(try store.script(customer: "acme", name: "one")?.activeVersion == 4)
        #expect(try store.scriptSource(customer: "acme", name: "one", version: 2).source == "-- 2")
        #expect(try store.scripts(ofCustomer: "acme").map(\.name) == ["one", "two"])
    }

    @Test func rollbackToPreviousThenToAGivenVersion() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        for round in 1...3 {
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v\(round)", actor: "c")
        }

        let back = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "customer:acme")
        #expect(back.activeVersion == 2)
        #expect(back.latestVersion == 3)
        #expect(back.sha256 == SHA256Hasher.hex("-- v2"))
        #expect(try store.scriptSource(customer: "acme", name: "hello", version: nil).source == "-- v2")

        #expect(try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c").activeVersion == 1)
        let atFirst = storeError { _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c") }
        #expect(atFirst?.kind == .conflict)
        #expect(atFirst?.description.contains("no earlier version") == true)

        #expect(try store.rollbackScript(customer: "acme", name: "hello", to: 3, actor: "c").activeVersion == 3)
        let missing = storeError { _ = try store.rollbackScript(customer: "acme", name: "hello", to: 9, actor: "c") }
        #expect(missing?.kind == .notFound)
        #expect(missing?.description.contains("has no version 9 (it has versions 1 to 3)") == true)
        #expect(storeError { _ = try store.rollbackScript(customer: "acme", name: "hello", to: 0, actor: "c") }?.kind == .notFound)

        // Rolling back records events, never versions.
        #expect(try store.scriptVersions(customer: "acme", name: "hello").count == 3)
        #expect(try auditActions(store).filter { $0 == "script.rollback" }.count == 3)
        // The next upload continues after the highest version, not the active one.
        _ = try store.rollbackScript(customer: "acme", name: "hello", to: 1, actor: "c")
        #expect(try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v4", actor: "c").version == 4)
    }

    @Test func deleteHidesAndReuploadContinuesNumbering() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "c")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "c")
        _ = try store.putScriptVersion(customer: "acme", name: "other", source: "-- x", actor: "c")
        try store.deleteScript(customer: "acme", name: "hello", actor: "customer:acme")

        #expect(try store.script(customer: "acme", name: "hello") == nil)
        #expect(try store.scripts(ofCustomer: "acme").map(\.name) == ["other"])
        #expect(try store.activeScripts().map(\.spec.name) == ["other"])
        #expect(storeError { _ = try store.scriptVersions(customer: "acme", name: "hello") }?.kind == .notFound)
        #expect(storeError { _ = try store.scriptSource(customer: "acme", name: "hello", version: 1) }?.kind == .notFound)
        #expect(storeError { _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c") }?.kind == .notFound)
        #expect(storeError { try store.deleteScript(customer: "acme", name: "hello", actor: "c") }?.kind == .notFound)

        let again = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 3", actor: "c")
        #expect(again.version == 3)
        #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1, 2, 3])
        #expect(try store.script(customer: "acme", name: "hello")?.activeVersion == 3)
    }

    @Test func quarantineAndItsRelease() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "c")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "c")

        let held = try store.setScriptQuarantined(
            customer: "acme", name: "hello", quarantined: true, reason: "killed 3 workers in 10 s", actor: "supervisor")
        #expect(held.quarantined)
        #expect(held.quarantineReason == "killed 3 workers in 10 s")
        #expect(try store.activeScripts().first?.quarantined == true)

        let released = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: false, reason: nil, actor: "admin")
        #expect(!released.quarantined)
        #expect(released.quarantineReason == nil)

        // A new upload releases it.
        _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: nil, actor: "supervisor")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 3", actor: "c")
        #expect(try store.script(customer: "acme", name: "hello")?.quarantined == false)

        // So does a rollback that changes the active version.
        _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: nil, actor: "supervisor")
        #expect(try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c").quarantined == false)
    }

    @Test func aCustomerSeesOnlyItsOwnScripts() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- acme", actor: "c")
        _ = try store.putScriptVersion(customer: "beta", name: "hello", source: "-- beta", actor: "c")
        _ = try store.putScriptVersion(customer: "beta", name: "secret", source: "-- beta secret", actor: "c")

        #expect(try store.scripts(ofCustomer: "acme").map(\.name) == ["hello"])
        #expect(try store.scripts(ofCustomer: "acme").first?.sha256 == SHA256Hasher.hex("-- acme"))
        #expect(try store.scriptSource(customer: "acme", name: "hello", version: nil).source == "-- acme")
        #expect(try store.scriptSource(customer: "beta", name: "hello", version: nil).source == "-- beta")
        #expect(try store.script(customer: "acme", name: "secret") == nil)
        #expect(storeError { _ = try store.scriptSource(customer: "acme", name: "secret", version: 1) }?.kind == .notFound)
        #expect(storeError { _ = try store.scriptVersions(customer: "acme", name: "secret") }?.kind == .notFound)
        #expect(storeError { try store.deleteScript(customer: "acme", name: "secret", actor: "customer:acme") }?.kind == .notFound)
        #expect(
            storeError {
                _ = try store.setScriptQuarantined(customer: "acme", name: "secret", quarantined: true, reason: nil, actor: "x")
            }?.kind == .notFound)

        // Acting on its own "hello" leaves the other customer's alone.
        try store.deleteScript(customer: "acme", name: "hello", actor: "customer:acme")
        #expect(try store.scripts(ofCustomer: "beta").map(\.name) == ["hello", "secret"])
        #expect(try store.scripts(ofCustomer: "acme").isEmpty)
        #expect(try store.allScripts().map { "\($0.customer)/\($0.name)" } == ["beta/hello", "beta/secret"])
    }

    @Test func unknownCustomerOrBadNames() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        let unknown = storeError { _ = try store.putScriptVersion(customer: "ghost", name: "hello", source: "", actor: "c") }
        #expect(unknown?.kind == .notFound)
        #expect(unknown?.description.contains("no customer named \"ghost\"") == true)
        #expect(storeError { _ = try store.putScriptVersion(customer: "acme", name: "Hello", source: "", actor: "c") }?.kind == .invalid)
        #expect(storeError { _ = try store.scriptVersions(customer: "ghost", name: "hello") }?.kind == .notFound)
        #expect(try store.allScripts().isEmpty)
    }

    @Test func anOversizedScriptOrArtifactIsRefused() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory, maximumContentBytes: 1024)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        let fits = String(repeating: "x", count: 1024)
        #expect(try store.putScriptVersion(customer: "acme", name: "edge", source: fits, actor: "c").size == 1024)
        let error = storeError { _ = try store.putScriptVersion(customer: "acme", name: "big", source: fits + "x", actor: "c") }
        #expect(error?.kind == .invalid)
        #expect(error?.description == "script acme/big is 1025 bytes, more than the 1024 bytes the store accepts")
        #expect(storeError { _ = try store.putArtifact(kind: .rules, content: fits + "x", actor: "admin") }?.kind == .invalid)
        #expect(try store.script(customer: "acme", name: "big") == nil)
    }

    @Test func activeScriptsForTheWorkers() throws {
        let directory = try TemporaryDirectory()
        let store = try storeWithCustomers(directory)
        _ = try store.putScriptVersion(customer: "beta", name: "zeta", source: "-- z1", actor: "c")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- h1", actor: "c")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- h2", actor: "c")
        _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c")

        let active = try store.activeScripts()
        #expect(active.map(\.spec.customer) == ["acme", "beta"])
        #expect(active[0].spec.version == 1)
        #expect(active[0].spec.source == "-- h1")
        #expect(active[0].cohort == "pro")
        #expect(active[0].sha256 == SHA256Hasher.hex("-- h1"))
        #expect(active[1].spec.name == "zeta")
        #expect(active[1].cohort == "free")

        // Moving the customer moves its scripts to the other pool.
        _ = try store.moveCustomer("beta", toCohort: "enterprise", actor: "admin")
        #expect(try store.activeScripts()[1].cohort == "enterprise")
    }
}
