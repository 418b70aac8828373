import BulkheadCore
import Foundation
import Store
import Testing

/// The `BulkheadStore` contract, run against SQLite and etcd alike: both stores must
/// refuse, number, audit and answer exactly the same. (StoreTests keeps what only
/// SQLite has: its file, its change feed, its replica.)
@Suite("BulkheadStore checks, on SQLite and on etcd", .serialized, .etcdServer)
struct StoreConformanceTests {
    private static let state = Data(#"{"stage": 0, "baseline": {"requests": 120}}"#.utf8)

    /// Customers `acme` (pro) and `beta` (free).
    private static func addCustomers(_ store: any BulkheadStore) throws {
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        _ = try store.addCustomer(name: "beta", cohort: "free", tokenHash: hash("beta"), actor: "cli")
    }

    // MARK: Customers

    @Test(arguments: Backend.allCases)
    func customersAddGetListAndFindByToken(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let acme = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme-token"), actor: "cli")
            _ = try store.addCustomer(name: "beta-co", cohort: "free", tokenHash: hash("beta-token"), actor: "cli")
            _ = try store.addCustomer(name: "acme-b", cohort: "free", tokenHash: hash("acme-b-token"), actor: "cli")
            #expect(acme.name == "acme" && acme.cohort == "pro")
            #expect(acme.createdAt == SteppingClock.start)
            #expect(try store.customer(named: "acme") == acme)
            #expect(try store.customer(named: "nobody") == nil)
            #expect(try store.customers().map(\.name) == ["acme", "acme-b", "beta-co"])
            #expect(try store.customer(withTokenHash: hash("acme-token")) == acme)
            #expect(try store.customer(withTokenHash: hash("beta-token"))?.name == "beta-co")
            #expect(try store.customer(withTokenHash: hash("wrong-token")) == nil)
            #expect(try store.customer(withTokenHash: "not a hash") == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func customersDuplicatesAndBadInput(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("one"), actor: "cli")
            let error = storeError { _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("two"), actor: "cli") }
            #expect(error?.kind == .conflict)
            #expect(error?.description.contains("customer \"acme\" already exists") == true)
            #expect(try store.customer(named: "acme")?.cohort == "pro")
            let shared = storeError { _ = try store.addCustomer(name: "other", cohort: "pro", tokenHash: hash("one"), actor: "cli") }
            #expect(shared?.kind == .conflict)
            #expect(try store.customer(named: "other") == nil)
            for name in ["", "Acme", "-acme", "acme_co", String(repeating: "a", count: 64)] {
                let error = storeError { _ = try store.addCustomer(name: name, cohort: "pro", tokenHash: hash(name), actor: "cli") }
                #expect(error?.kind == .invalid, "name \(name.debugDescription)")
            }
            #expect(storeError { _ = try store.addCustomer(name: "x", cohort: "Pro", tokenHash: hash("x"), actor: "cli") }?.kind == .invalid)
            #expect(storeError { _ = try store.addCustomer(name: "x", cohort: "pro", tokenHash: "raw-token", actor: "cli") }?.kind == .invalid)
            #expect(storeError { _ = try store.addCustomer(name: "x", cohort: "pro", tokenHash: hash("x"), actor: "") }?.kind == .invalid)
            #expect(try store.customers().map(\.name) == ["acme"])
        }
    }

    @Test(arguments: Backend.allCases)
    func customersMoveToAnotherCohort(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("t"), actor: "cli")
            let moved = try store.moveCustomer("acme", toCohort: "enterprise", actor: "admin")
            #expect(moved.cohort == "enterprise")
            #expect(try store.customer(named: "acme")?.cohort == "enterprise")
            #expect(try store.customer(withTokenHash: hash("t"))?.cohort == "enterprise")
            #expect(storeError { _ = try store.moveCustomer("ghost", toCohort: "pro", actor: "admin") }?.kind == .notFound)
        }
    }

    // MARK: Scripts

    @Test(arguments: Backend.allCases)
    func scriptPutAndReadBack(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            let source = "function handle(req) return \"h\u{e9}llo \u{2603}\" end\n"
            let put = try store.putScriptVersion(customer: "acme", name: "hello", source: source, actor: "customer:acme")
            #expect(put.version == 1)
            #expect(put.sha256 == SHA256Hasher.hex(source))
            #expect(put.size == source.utf8.count && put.size != source.count)
            #expect(put.createdBy == "customer:acme")
            let read = try store.scriptSource(customer: "acme", name: "hello", version: nil)
            #expect(read.source == source)
            #expect(read.version == put)
            #expect(try store.scriptSource(customer: "acme", name: "hello", version: 1).source == source)
            let summary = try #require(try store.script(customer: "acme", name: "hello"))
            #expect(summary.activeVersion == 1 && summary.latestVersion == 1)
            #expect(summary.sha256 == put.sha256 && summary.size == put.size)
            #expect(!summary.quarantined)
            #expect(summary.updatedAt == put.createdAt && summary.createdAt == put.createdAt)
            #expect(try store.scriptVersions(customer: "acme", name: "hello") == [put])
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptWithNulBytesIsStoredWhole(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            let source = "function handle(req) return 'a\u{0}b' end\n\u{0}"
            let put = try store.putScriptVersion(customer: "acme", name: "nul", source: source, actor: "customer:acme")
            #expect(put.size == source.utf8.count)
            let read = try store.scriptSource(customer: "acme", name: "nul", version: nil)
            #expect(Array(read.source.utf8) == Array(source.utf8))
            let active = try #require(try store.activeScripts().first { $0.spec.name == "nul" })
            #expect(Array(active.spec.source.utf8) == Array(source.utf8))
            #expect(active.sha256 == put.sha256)
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptVersionsCountPerScript(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
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
    }

    @Test(arguments: Backend.allCases)
    func scriptRollbackToPreviousThenToAGivenVersion(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            for round in 1...3 {
                _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v\(round)", actor: "c")
            }
            let back = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "customer:acme")
            #expect(back.activeVersion == 2 && back.latestVersion == 3)
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
            #expect(try store.scriptVersions(customer: "acme", name: "hello").count == 3)
            #expect(try auditActions(store).filter { $0 == "script.rollback" }.count == 3)
            _ = try store.rollbackScript(customer: "acme", name: "hello", to: 1, actor: "c")
            #expect(try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v4", actor: "c").version == 4)
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptDeleteHidesAndReuploadContinuesNumbering(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
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
    }

    @Test(arguments: Backend.allCases)
    func scriptQuarantineAndItsRelease(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "c")
            let held = try store.setScriptQuarantined(
                customer: "acme", name: "hello", quarantined: true, reason: "killed 3 workers in 10 s", actor: "supervisor")
            #expect(held.quarantined && held.quarantineReason == "killed 3 workers in 10 s")
            #expect(try store.activeScripts().first?.quarantined == true)
            let released = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: false, reason: nil, actor: "admin")
            #expect(!released.quarantined && released.quarantineReason == nil)
            _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: nil, actor: "supervisor")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 3", actor: "c")
            #expect(try store.script(customer: "acme", name: "hello")?.quarantined == false)
            _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: nil, actor: "supervisor")
            #expect(try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c").quarantined == false)
            let long = String(repeating: "x", count: 2001)
            #expect(storeError {
                _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: long, actor: "s")
            }?.kind == .invalid)
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptsACustomerSeesOnlyItsOwn(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
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
            try store.deleteScript(customer: "acme", name: "hello", actor: "customer:acme")
            #expect(try store.scripts(ofCustomer: "beta").map(\.name) == ["hello", "secret"])
            #expect(try store.scripts(ofCustomer: "acme").isEmpty)
            #expect(try store.allScripts().map { "\($0.customer)/\($0.name)" } == ["beta/hello", "beta/secret"])
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptsUnknownCustomerBadNamesAndOversized(_ backend: Backend) async throws {
        try await withStore(backend, maximumContentBytes: 1024) { store in
            try Self.addCustomers(store)
            let unknown = storeError { _ = try store.putScriptVersion(customer: "ghost", name: "hello", source: "", actor: "c") }
            #expect(unknown?.kind == .notFound)
            #expect(unknown?.description.contains("no customer named \"ghost\"") == true)
            #expect(storeError { _ = try store.putScriptVersion(customer: "acme", name: "Hello", source: "", actor: "c") }?.kind == .invalid)
            #expect(storeError { _ = try store.scriptVersions(customer: "ghost", name: "hello") }?.kind == .notFound)
            let fits = String(repeating: "x", count: 1024)
            #expect(try store.putScriptVersion(customer: "acme", name: "edge", source: fits, actor: "c").size == 1024)
            let error = storeError { _ = try store.putScriptVersion(customer: "acme", name: "big", source: fits + "x", actor: "c") }
            #expect(error?.kind == .invalid)
            #expect(error?.description == "script acme/big is 1025 bytes, more than the 1024 bytes the store accepts")
            #expect(storeError { _ = try store.putArtifact(kind: .rules, content: fits + "x", actor: "admin") }?.kind == .invalid)
            #expect(try store.allScripts().map(\.name) == ["edge"])
            // An empty source is a source.
            #expect(try store.putScriptVersion(customer: "beta", name: "empty", source: "", actor: "c").size == 0)
            #expect(try store.scriptSource(customer: "beta", name: "empty", version: nil).source == "")
        }
    }

    @Test(arguments: Backend.allCases)
    func scriptsActiveForTheWorkers(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            _ = try store.addCustomer(name: "acme-b", cohort: "free", tokenHash: hash("acme-b"), actor: "cli")
            _ = try store.putScriptVersion(customer: "beta", name: "zeta", source: "-- z1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- h1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- h2", actor: "c")
            _ = try store.putScriptVersion(customer: "acme-b", name: "a", source: "-- a", actor: "c")
            _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c")
            let active = try store.activeScripts()
            #expect(active.map(\.spec.customer) == ["acme", "acme-b", "beta"])
            #expect(active[0].spec.version == 1 && active[0].spec.source == "-- h1")
            #expect(active[0].cohort == "pro")
            #expect(active[0].sha256 == SHA256Hasher.hex("-- h1"))
            #expect(active[2].spec.name == "zeta" && active[2].cohort == "free")
            #expect(try store.allScripts().map { "\($0.customer)/\($0.name)" } == ["acme/hello", "acme-b/a", "beta/zeta"])
            _ = try store.moveCustomer("beta", toCohort: "enterprise", actor: "admin")
            #expect(try store.activeScripts()[2].cohort == "enterprise")
        }
    }

    // MARK: Artifacts

    @Test(arguments: Backend.allCases)
    func artifactVersionsCountPerKind(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            #expect(try store.latestArtifact(kind: .rules) == nil)
            #expect(try store.artifacts(kind: .rules).isEmpty)
            let rules1 = try store.putArtifact(kind: .rules, content: #"{"rules": []}"#, actor: "admin")
            let runtime1 = try store.putArtifact(kind: .runtime, content: "function on_request(req, rules) end", actor: "admin")
            let rules2 = try store.putArtifact(kind: .rules, content: #"{"rules": [{"id": "a"}]}"#, actor: "admin")
            let binary1 = try store.putArtifact(kind: .binary, content: "/opt/bulkhead/2/bulkhead", actor: "admin")
            #expect(rules1.version == 1 && rules2.version == 2 && runtime1.version == 1 && binary1.version == 1)
            #expect(rules2.sha256 == SHA256Hasher.hex(#"{"rules": [{"id": "a"}]}"#))
            #expect(rules2.size == 24)
            #expect(try store.artifacts(kind: .rules) == [rules1, rules2])
            #expect(try store.artifacts(kind: .runtime) == [runtime1])
        }
    }

    @Test(arguments: Backend.allCases)
    func artifactGetAndLatestCarryTheContent(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let first = try store.putArtifact(kind: .runtime, content: "-- runtime 1", actor: "admin")
            let second = try store.putArtifact(kind: .runtime, content: "-- runtime 2", actor: "rollout")
            let one = try #require(try store.artifact(kind: .runtime, version: 1))
            #expect(one.summary == first && one.content == "-- runtime 1")
            let latest = try #require(try store.latestArtifact(kind: .runtime))
            #expect(latest.summary == second && latest.content == "-- runtime 2")
            #expect(latest.kind == .runtime && latest.version == 2 && latest.summary.createdBy == "rollout")
            #expect(try store.artifact(kind: .runtime, version: 3) == nil)
            #expect(try store.artifact(kind: .rules, version: 1) == nil)
            let content = "function on_request(req, rules) local s = 'a\u{0}b' end\n\u{0}"
            let put = try store.putArtifact(kind: .runtime, content: content, actor: "admin")
            let read = try #require(try store.artifact(kind: .runtime, version: put.version))
            #expect(Array(read.content.utf8) == Array(content.utf8))
        }
    }

    // MARK: Rollouts

    @Test(arguments: Backend.allCases)
    func rolloutCreateGetUpdate(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let state = Self.state
            _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
            let created = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
            #expect(created.id == 1 && created.fromVersion == 0 && !created.finished)
            #expect(try store.rollout(id: 1) == created)
            #expect(try store.runningRollout(kind: .rules) == created)
            #expect(try store.runningRollout(kind: .runtime) == nil)
            let newState = Data([0x7b, 0x7d, 0x00, 0xff])  // kept byte for byte, even if not JSON
            let paused = try store.updateRollout(id: 1, status: "paused", state: newState, finished: false, actor: "rollout")
            #expect(paused.status == "paused" && paused.state == newState)
            #expect(paused.updatedAt > created.updatedAt)
            #expect(try store.rollout(id: 1) == paused)
            #expect(try store.runningRollout(kind: .rules)?.status == "paused")
            let done = try store.updateRollout(id: 1, status: "rolled-back", state: state, finished: true, actor: "rollout")
            #expect(done.finished)
            #expect(try store.runningRollout(kind: .rules) == nil)
            #expect(try store.rollout(id: 99) == nil)
            #expect(storeError { _ = try store.updateRollout(id: 99, status: "x", state: state, finished: true, actor: "r") }?.kind == .notFound)
            #expect(storeError { _ = try store.updateRollout(id: 1, status: "", state: state, finished: true, actor: "r") }?.kind == .invalid)
        }
    }

    @Test(arguments: Backend.allCases)
    func rolloutOneUnfinishedPerKind(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let state = Self.state
            _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
            _ = try store.putArtifact(kind: .rules, content: "{ }", actor: "admin")
            _ = try store.putArtifact(kind: .runtime, content: "--", actor: "admin")
            let first = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
            let clash = storeError {
                _ = try store.createRollout(kind: .rules, version: 2, fromVersion: 1, status: "running", state: state, actor: "admin")
            }
            #expect(clash?.kind == .conflict)
            #expect(clash?.description.contains("rollout 1 of the rules artifact is still in progress") == true)
            let runtime = try store.createRollout(kind: .runtime, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
            #expect(runtime.id == 2)
            _ = try store.updateRollout(id: first.id, status: "succeeded", state: state, finished: true, actor: "rollout")
            let next = try store.createRollout(kind: .rules, version: 2, fromVersion: 1, status: "running", state: state, actor: "admin")
            #expect(next.id == 3)
            let reopen = storeError { _ = try store.updateRollout(id: first.id, status: "running", state: state, finished: false, actor: "r") }
            #expect(reopen?.kind == .conflict)
            #expect(try store.rollout(id: first.id)?.status == "succeeded")
            #expect(try store.rollouts(limit: 10).map(\.id) == [3, 2, 1])
            #expect(try store.rollouts(limit: 2).map(\.id) == [3, 2])
            #expect(try store.rollouts(limit: 10).first?.state == state)
            #expect(storeError { _ = try store.rollouts(limit: 0) }?.kind == .invalid)
        }
    }

    @Test(arguments: Backend.allCases)
    func rolloutTheArtifactMustExist(_ backend: Backend) async throws {
        try await withStore(backend) { (store: any BulkheadStore) throws in
            let error = storeError {
                _ = try store.createRollout(kind: .binary, version: 1, fromVersion: 0, status: "running", state: Self.state, actor: "admin")
            }
            #expect(error?.kind == .notFound)
            #expect(error?.description == "there is no binary artifact version 1")
            #expect(try store.rollouts(limit: 10).isEmpty)
        }
    }

    // MARK: Settings

    @Test(arguments: Backend.allCases)
    func settingsSetReadAndClear(_ backend: Backend) async throws {
        try await withStore(backend) { store in
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
            let events = try store.auditEvents(after: 0, limit: 10)
            #expect(events.map(\.detail) == [
                #"{"previous":null,"value":"blue"}"#, #"{"previous":"blue","value":"green"}"#,
                #"{"previous":null,"value":"3"}"#, #"{"previous":"green","value":null}"#,
            ])
        }
    }

    @Test(arguments: Backend.allCases)
    func settingsTypedHelpersAndMangledValues(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            #expect(try store.legacyFrozen() == false)
            try store.setSetting(SettingKey.frozen, to: "true", actor: "break-glass")
            #expect(try store.legacyFrozen())
            try store.setSetting(SettingKey.pinnedVersion(.rules), to: "4", actor: "break-glass")
            #expect(try store.legacyPinnedVersion(of: .rules) == 4)
            #expect(try store.legacyPinnedVersion(of: .runtime) == nil)
            try store.setActiveVersion(2, of: .runtime, inPool: "free", actor: "rollout")
            #expect(try store.activeVersion(of: .runtime, inPool: "free") == 2)
            #expect(try store.setting(SettingKey.activeVersion(.runtime, pool: "free")) == "2")
            try store.setWorkerCount(6, ofPool: "pro", actor: "cli")
            #expect(try store.workerCount(ofPool: "pro") == 6)
            #expect(storeError { try store.setWorkerCount(-1, ofPool: "pro", actor: "cli") }?.kind == .invalid)
            try store.setSetting(SettingKey.frozen, to: "maybe", actor: "someone")
            let frozen = storeError { _ = try store.legacyFrozen() }
            #expect(frozen?.kind == .damaged)
            #expect(frozen?.description.contains("setting frozen holds \"maybe\"") == true)
        }
    }

    // MARK: Audit log

    @Test(arguments: Backend.allCases)
    func auditEveryChangeIsAudited(_ backend: Backend) async throws {
        try await withStore(backend) { store in
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
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 3", actor: "customer:acme")

            let events = try store.auditEvents(after: 0, limit: 100)
            #expect(events.map(\.action.rawValue) == [
                "customer.add", "customer.move", "script.put", "script.put", "script.rollback", "script.quarantine",
                "script.unquarantine", "script.delete", "artifact.put", "rollout.create", "rollout.update", "setting.set",
                "setting.clear", "script.put",
            ])
            #expect(events.map(\.subject) == [
                "customer/acme", "customer/acme", "script/acme/hello", "script/acme/hello", "script/acme/hello",
                "script/acme/hello", "script/acme/hello", "script/acme/hello", "artifact/rules/1", "rollout/1", "rollout/1",
                "setting/frozen", "setting/frozen", "script/acme/hello",
            ])
            #expect(events.map(\.id) == Array(1...14))
            #expect(events.first?.actor == "cli")
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.at < $1.at })
            // The same details, byte for byte, on both backends.
            #expect(events[0].detail == #"{"cohort":"free"}"#)
            #expect(events[1].detail == #"{"from":"free","to":"pro"}"#)
            #expect(events[2].detail == #"{"previous_version":null,"released_quarantine":false,"sha256":"\#(SHA256Hasher.hex("-- 1"))","size":4,"undeleted":false,"version":1}"#)
            #expect(events[4].detail == #"{"from":2,"released_quarantine":false,"to":1}"#)
            #expect(events[5].detail == #"{"reason":"kills","version":1}"#)
            #expect(events[7].detail == #"{"active_version":1}"#)
            #expect(events[8].detail == #"{"sha256":"\#(SHA256Hasher.hex("{}"))","size":2}"#)
            #expect(events[9].detail == #"{"from_version":0,"kind":"rules","status":"running","version":1}"#)
            #expect(events[10].detail == #"{"finished":true,"kind":"rules","previous_status":"running","status":"succeeded","version":1}"#)
            #expect(events[13].detail.contains(#""previous_version":1,"released_quarantine":false"#))
            #expect(events[13].detail.contains(#""undeleted":true"#))
            #expect(!events.contains { $0.detail.contains(hash("acme")) })
        }
    }

    @Test(arguments: Backend.allCases)
    func auditAFailedChangeLeavesNoEvent(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("acme"), actor: "cli")
            _ = storeError { _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("other"), actor: "cli") }
            _ = storeError { _ = try store.rollbackScript(customer: "acme", name: "ghost", to: nil, actor: "cli") }
            _ = storeError { _ = try store.createRollout(kind: .rules, version: 7, fromVersion: 0, status: "running", state: Data(), actor: "cli") }
            _ = storeError { _ = try store.putScriptVersion(customer: "ghost", name: "x", source: "--", actor: "cli") }
            #expect(try auditActions(store) == ["customer.add"])
            #expect(try store.latestAuditEventID() == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func auditAppendAndFollow(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            #expect(try store.latestAuditEventID() == 0)
            #expect(try store.auditEvents(after: 0, limit: 10).isEmpty)
            let first = try store.appendAudit(
                actor: "break-glass", action: AuditAction("break-glass.freeze"), subject: "host", detail: #"{"reason":"incident 42"}"#)
            #expect(first.id == 1)
            #expect(first.at == SteppingClock.start)
            for index in 2...5 {
                _ = try store.appendAudit(actor: "rollout", action: AuditAction("rollout.stage"), subject: "rollout/1", detail: "{\"stage\":\(index)}")
            }
            // A detail is kept as it was given, spaces and all.
            let spaced = try store.appendAudit(actor: "x", action: AuditAction("a"), subject: "s", detail: #" [1, {"b" : "}"}] "#)
            #expect(try store.latestAuditEventID() == 6)
            #expect(try store.auditEvents(after: 0, limit: 2).map(\.id) == [1, 2])
            #expect(try store.auditEvents(after: 2, limit: 100).map(\.id) == [3, 4, 5, 6])
            #expect(try store.auditEvents(after: 6, limit: 100).isEmpty)
            #expect(try store.auditEvents(after: Int.max, limit: 100).isEmpty)
            #expect(try store.auditEvents(after: 0, limit: 1).first == first)
            #expect(try store.auditEvents(after: 5, limit: 1).first == spaced)
            #expect(storeError { _ = try store.appendAudit(actor: "x", action: AuditAction("a"), subject: "s", detail: "{oops") }?.kind == .invalid)
            #expect(storeError { _ = try store.appendAudit(actor: "", action: AuditAction("a"), subject: "s", detail: "{}") }?.kind == .invalid)
            #expect(storeError { _ = try store.auditEvents(after: 0, limit: 0) }?.kind == .invalid)
        }
    }
}
