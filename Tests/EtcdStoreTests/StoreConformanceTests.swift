import BulkheadCore
import EtcdStore
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

    @Test(arguments: Backend.allCases)
    func customersRotateTokenReplacesTheHashAtOnce(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            let before = try #require(try store.customer(named: "acme"))
            let rotated = try store.rotateCustomerToken(name: "acme", tokenHash: hash("acme-2"), actor: "admin")
            #expect(rotated.name == "acme" && rotated.cohort == "pro" && rotated.tokenHash == hash("acme-2"))
            #expect(rotated.createdAt == before.createdAt)
            #expect(try store.customer(named: "acme") == rotated)
            #expect(try store.customer(withTokenHash: hash("acme")) == nil, "the old token stops working")
            #expect(try store.customer(withTokenHash: hash("acme-2")) == rotated)
            let event = try #require(try store.auditEvents(after: 0, limit: 100).last)
            #expect(event.action == .customerTokenRotated && event.action.rawValue == "customer.rotate-token")
            #expect(event.actor == "admin" && event.subject == "customer/acme")
            #expect(event.detail == #"{"cohort":"pro"}"#, "never the token or a hash")
            // Again: the second hash goes as the first did.
            _ = try store.rotateCustomerToken(name: "acme", tokenHash: hash("acme-3"), actor: "customer:acme")
            #expect(try store.customer(withTokenHash: hash("acme-2")) == nil)
            #expect(try store.customer(withTokenHash: hash("acme-3"))?.name == "acme")
            // Refused: another customer's hash, an unknown customer, bad input; nothing changes.
            let latest = try store.latestAuditEventID()
            #expect(storeError { _ = try store.rotateCustomerToken(name: "acme", tokenHash: hash("beta"), actor: "a") }?.kind == .conflict)
            #expect(storeError { _ = try store.rotateCustomerToken(name: "ghost", tokenHash: hash("g"), actor: "a") }?.kind == .notFound)
            #expect(storeError { _ = try store.rotateCustomerToken(name: "acme", tokenHash: "raw", actor: "a") }?.kind == .invalid)
            #expect(storeError { _ = try store.rotateCustomerToken(name: "Acme", tokenHash: hash("x"), actor: "a") }?.kind == .invalid)
            #expect(try store.latestAuditEventID() == latest)
            #expect(try store.customer(withTokenHash: hash("acme-3"))?.name == "acme")
            #expect(try store.customer(withTokenHash: hash("beta"))?.name == "beta")
        }
    }

    @Test(arguments: Backend.allCases)
    func customersRemoveTakesTheirScriptsAndAReAddStartsFresh(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            _ = try store.putScriptVersion(customer: "acme", name: "other", source: "-- o1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "gone", source: "-- g1", actor: "c")
            try store.deleteScript(customer: "acme", name: "gone", actor: "c")
            _ = try store.putScriptVersion(customer: "beta", name: "keep", source: "-- k1", actor: "c")
            // A finished deployment and an unfinished one.
            _ = try store.putScriptVersionInactive(customer: "acme", name: "other", source: "-- o2", actor: "c")
            let finished = try store.createDeployment(
                customer: "acme", name: "other", version: 2, keyHeader: nil, percent: 5, status: "running", state: Data(),
                actor: "admin")
            _ = try store.updateDeployment(id: finished.id, status: "completed", state: Data(), percent: 100, end: .promote, actor: "d")
            let running = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: nil, percent: 10, status: "running", state: Self.state,
                actor: "admin")
            let feed = try FeedFollower(store)
            defer { feed.close() }
            _ = try feed.follow()

            try store.removeCustomer(name: "acme", actor: "admin")
            #expect(try store.customer(named: "acme") == nil)
            #expect(try store.customer(withTokenHash: hash("acme")) == nil)
            #expect(try store.customers().map(\.name) == ["beta"])
            #expect(try store.allScripts().map { "\($0.customer)/\($0.name)" } == ["beta/keep"])
            #expect(try store.activeScripts().map { "\($0.spec.customer)/\($0.spec.name)" } == ["beta/keep"])
            // The unfinished deployment ended with it; no record of either is left.
            #expect(try store.unfinishedDeployments().isEmpty)
            #expect(try store.deployment(id: running.id) == nil)
            #expect(try store.deployment(id: finished.id) == nil)
            let event = try #require(try store.auditEvents(after: 0, limit: 100).last)
            #expect(event.action == .customerRemoved && event.action.rawValue == "customer.remove")
            #expect(event.actor == "admin" && event.subject == "customer/acme")
            #expect(event.detail == #"{"aborted_deployments":"\#(running.id)","cohort":"pro","scripts":"hello,other"}"#)

            // The feed names the customer and each of its scripts; a host drops them.
            let step = try feed.follow()
            #expect(step.changes.contains(.customer("acme")))
            #expect(step.changes.contains(.script(customer: "acme", name: "hello")))
            #expect(step.changes.contains(.script(customer: "acme", name: "other")))
            #expect(step.removedCustomers == ["acme"])
            let removed = Set(step.removedScripts)
            #expect(removed.isSuperset(of: [ScriptAddress(customer: "acme", name: "hello"), ScriptAddress(customer: "acme", name: "other")]))
            #expect(removed.allSatisfy { $0.customer == "acme" })
            #expect(step.scripts.isEmpty)
            #expect(try feed.follow(copying: true).scripts == store.activeScripts())

            // The name again: no scripts, versions from 1, no deployments.
            _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("acme-again"), actor: "cli")
            #expect(try store.scripts(ofCustomer: "acme").isEmpty)
            #expect(try store.putScriptVersion(customer: "acme", name: "hello", source: "-- new", actor: "c").version == 1)
            #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1])
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10).isEmpty)
            #expect(try store.deployments(customer: "acme", name: "other", limit: 10).isEmpty)
            #expect(try store.activeScripts().first { $0.spec.customer == "acme" }?.cohort == "free")
            // Refused: an unknown customer, a bad name; nothing is audited.
            let latest = try store.latestAuditEventID()
            #expect(storeError { try store.removeCustomer(name: "ghost", actor: "admin") }?.kind == .notFound)
            #expect(storeError { try store.removeCustomer(name: "Acme", actor: "admin") }?.kind == .invalid)
            #expect(try store.latestAuditEventID() == latest)
            // A customer with no script at all goes too.
            _ = try store.addCustomer(name: "empty", cohort: "pro", tokenHash: hash("empty"), actor: "cli")
            try store.removeCustomer(name: "empty", actor: "admin")
            #expect(try store.auditEvents(after: 0, limit: 1000).last?.detail == #"{"aborted_deployments":"","cohort":"pro","scripts":""}"#)
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

    // MARK: Deployments

    /// `acme/hello` with version 1 active ("-- v1") and version 2 ("-- v2") stored inactive.
    private static func addCandidate(_ store: any BulkheadStore) throws {
        try addCustomers(store)
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v1", actor: "customer:acme")
        _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- v2", actor: "customer:acme")
    }

    /// The active `acme/hello` as the workers get it.
    private static func hello(_ store: any BulkheadStore) throws -> ActiveScript? {
        try store.activeScripts().first { $0.spec.customer == "acme" && $0.spec.name == "hello" }
    }

    @Test(arguments: Backend.allCases)
    func deploymentSplitIsServedWithTheCandidatesSource(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            let summary = try #require(try store.script(customer: "acme", name: "hello"))
            #expect(summary.activeVersion == 1 && summary.latestVersion == 2)
            #expect(try Self.hello(store)?.spec.split == nil)
            let created = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: "x-user", percent: 10, status: "running",
                state: Self.state, actor: "admin")
            #expect(created.id == 1 && created.version == 2 && created.fromVersion == 1 && created.keyHeader == "x-user")
            #expect(created.percent == 10 && created.status == "running" && !created.finished && created.state == Self.state)
            #expect(created.createdBy == "admin" && created.createdAt == created.updatedAt)
            #expect(try store.deployment(id: 1) == created)
            #expect(try store.unfinishedDeployments() == [created])
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10) == [created])
            let active = try #require(try Self.hello(store))
            #expect(active.spec.version == 1 && active.spec.source == "-- v1" && active.sha256 == SHA256Hasher.hex("-- v1"))
            #expect(active.spec.split == ScriptSplit(deployment: 1, version: 2, source: "-- v2", percent: 10, keyHeader: "x-user"))
            // A step: the share grows; the state is kept byte for byte.
            let state = Data([0x7b, 0x7d, 0x00, 0xff])
            let step = try store.updateDeployment(id: 1, status: "running", state: state, percent: 50, end: nil, actor: "deployment")
            #expect(step.percent == 50 && step.state == state && !step.finished && step.updatedAt > created.updatedAt)
            #expect(try store.deployment(id: 1) == step)
            #expect(try Self.hello(store)?.spec.split?.percent == 50)
            // Paused at 0 %: unfinished, but nothing goes to the candidate.
            let paused = try store.updateDeployment(id: 1, status: "paused", state: state, percent: 0, end: nil, actor: "admin")
            #expect(paused.status == "paused" && !paused.finished)
            #expect(try Self.hello(store)?.spec.split == nil)
            #expect(try store.unfinishedDeployments().map(\.id) == [1])
            #expect(try store.script(customer: "acme", name: "hello")?.activeVersion == 1)
            // Without a key header the split hashes the client's address.
            _ = try store.putScriptVersion(customer: "beta", name: "other", source: "-- o1", actor: "c")
            _ = try store.putScriptVersionInactive(customer: "beta", name: "other", source: "-- o2", actor: "c")
            let plain = try store.createDeployment(
                customer: "beta", name: "other", version: 2, keyHeader: nil, percent: 100, status: "running", state: Data(),
                actor: "admin")
            #expect(plain.id == 2 && plain.keyHeader == nil)
            let other = try #require(try store.activeScripts().first { $0.spec.name == "other" })
            #expect(other.spec.split == ScriptSplit(deployment: 2, version: 2, source: "-- o2", percent: 100, keyHeader: nil))
            #expect(try store.unfinishedDeployments().map(\.id) == [1, 2])
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10).map(\.id) == [1])
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentOneUnfinishedPerScriptAndWhatIsRefused(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- v3", actor: "customer:acme")
            let sameActive = storeError {
                _ = try store.createDeployment(
                    customer: "acme", name: "hello", version: 1, keyHeader: nil, percent: 5, status: "running", state: Data(),
                    actor: "admin")
            }
            #expect(sameActive?.kind == .conflict)
            #expect(sameActive?.description.contains("version 1 of script acme/hello is already active") == true)
            let missing = storeError {
                _ = try store.createDeployment(
                    customer: "acme", name: "hello", version: 9, keyHeader: nil, percent: 5, status: "running", state: Data(),
                    actor: "admin")
            }
            #expect(missing?.kind == .notFound)
            #expect(missing?.description.contains("has no version 9 (it has versions 1 to 3)") == true)
            #expect(storeError {
                _ = try store.createDeployment(
                    customer: "acme", name: "ghost", version: 2, keyHeader: nil, percent: 5, status: "running", state: Data(),
                    actor: "admin")
            }?.kind == .notFound)
            #expect(storeError {
                _ = try store.createDeployment(
                    customer: "ghost", name: "hello", version: 2, keyHeader: nil, percent: 5, status: "running", state: Data(),
                    actor: "admin")
            }?.kind == .notFound)
            let refused: [(percent: Double, header: String, status: String)] = [
                (-1, "x-user", "running"), (100.5, "x-user", "running"), (.nan, "x-user", "running"), (5, "X-User", "running"),
                (5, "", "running"), (5, "x user", "running"), (5, "x-user", ""),
            ]
            for (percent, header, status) in refused {
                let error = storeError {
                    _ = try store.createDeployment(
                        customer: "acme", name: "hello", version: 2, keyHeader: header, percent: percent, status: status,
                        state: Data(), actor: "admin")
                }
                #expect(error?.kind == .invalid, "percent \(percent), header \(header.debugDescription), status \(status.debugDescription)")
            }
            #expect(try store.unfinishedDeployments().isEmpty)
            let first = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: nil, percent: 5, status: "running", state: Data(),
                actor: "admin")
            let second = storeError {
                _ = try store.createDeployment(
                    customer: "acme", name: "hello", version: 3, keyHeader: nil, percent: 5, status: "running", state: Data(),
                    actor: "admin")
            }
            #expect(second?.kind == .conflict)
            #expect(second?.description.contains("deployment \(first.id) of script acme/hello is still in progress") == true)
            #expect(try store.unfinishedDeployments() == [first])
            #expect(storeError { _ = try store.deployments(customer: "acme", name: "hello", limit: 0) }?.kind == .invalid)
            #expect(try store.deployments(customer: "acme", name: "nothing", limit: 5).isEmpty)
            #expect(try store.deployment(id: 99) == nil)
            let unknown = storeError {
                _ = try store.updateDeployment(id: 99, status: "running", state: Data(), percent: 5, end: nil, actor: "admin")
            }
            #expect(unknown?.kind == .notFound)
            #expect(unknown?.description == "there is no script deployment 99")
            #expect(storeError {
                _ = try store.updateDeployment(id: first.id, status: "running", state: Data(), percent: 101, end: nil, actor: "admin")
            }?.kind == .invalid)
            #expect(try auditActions(store).filter { $0.hasPrefix("deployment.") } == ["deployment.create"])
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentRefusesALiveUploadButTakesAnInactiveOne(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            let deployment = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: nil, percent: 20, status: "running", state: Data(),
                actor: "admin")
            let before = try auditActions(store)
            let live = storeError { _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v3", actor: "c") }
            #expect(live?.kind == .conflict)
            #expect(live?.description.contains("deployment \(deployment.id) of script acme/hello is still in progress") == true)
            #expect(try auditActions(store) == before)
            #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1, 2])
            // An inactive upload is taken: the active version, the split and a quarantine stay.
            _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: "r", actor: "supervisor")
            let staged = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- v3", actor: "c")
            #expect(staged.version == 3 && staged.sha256 == SHA256Hasher.hex("-- v3") && staged.createdBy == "c")
            let summary = try #require(try store.script(customer: "acme", name: "hello"))
            #expect(summary.activeVersion == 1 && summary.latestVersion == 3 && summary.quarantined)
            #expect(summary.sha256 == SHA256Hasher.hex("-- v1"))
            #expect(try store.scriptSource(customer: "acme", name: "hello", version: 3).source == "-- v3")
            #expect(try Self.hello(store)?.spec.split?.version == 2)
            // A new script, and a deleted one, get their version active: nothing else is served.
            let fresh = try store.putScriptVersionInactive(customer: "beta", name: "fresh", source: "-- f1", actor: "c")
            #expect(fresh.version == 1)
            #expect(try store.activeScripts().first { $0.spec.name == "fresh" }?.spec.source == "-- f1")
            try store.deleteScript(customer: "beta", name: "fresh", actor: "c")
            #expect(try store.putScriptVersionInactive(customer: "beta", name: "fresh", source: "-- f2", actor: "c").version == 2)
            #expect(try store.script(customer: "beta", name: "fresh")?.activeVersion == 2)
            #expect(storeError { _ = try store.putScriptVersionInactive(customer: "ghost", name: "x", source: "--", actor: "c") }?.kind == .notFound)
            let events = try store.auditEvents(after: 0, limit: 100).filter { $0.action == .scriptStaged }
            #expect(events.map(\.subject) == ["script/acme/hello", "script/acme/hello", "script/beta/fresh", "script/beta/fresh"])
            #expect(events[1].detail == #"{"active_version":1,"sha256":"\#(SHA256Hasher.hex("-- v3"))","size":5,"undeleted":false,"version":3}"#)
            #expect(events[3].detail.contains(#""active_version":2"#) && events[3].detail.contains(#""undeleted":true"#))
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentPromoteMakesTheCandidateActiveAndClearsTheSplit(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            let created = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: "x-user", percent: 10, status: "running", state: Data(),
                actor: "admin")
            _ = try store.updateDeployment(id: created.id, status: "running", state: Data(), percent: 50, end: nil, actor: "deployment")
            _ = try store.setScriptQuarantined(customer: "acme", name: "hello", quarantined: true, reason: "r", actor: "supervisor")
            let done = try store.updateDeployment(
                id: created.id, status: "completed", state: Self.state, percent: 100, end: .promote, actor: "deployment")
            #expect(done.finished && done.status == "completed" && done.percent == 0 && done.state == Self.state)
            #expect(try store.deployment(id: created.id) == done)
            let summary = try #require(try store.script(customer: "acme", name: "hello"))
            #expect(summary.activeVersion == 2 && !summary.quarantined && summary.quarantineReason == nil)
            #expect(summary.sha256 == SHA256Hasher.hex("-- v2") && summary.size == 5)
            #expect(summary.updatedAt == done.updatedAt)
            let active = try #require(try Self.hello(store))
            #expect(active.spec.version == 2 && active.spec.source == "-- v2" && active.spec.split == nil && !active.quarantined)
            #expect(try store.unfinishedDeployments().isEmpty)
            // Finished for good; the script takes live uploads again.
            let again = storeError {
                _ = try store.updateDeployment(id: created.id, status: "running", state: Data(), percent: 5, end: nil, actor: "admin")
            }
            #expect(again?.kind == .conflict)
            #expect(again?.description == "deployment \(created.id) has finished and cannot be changed; start a new deployment")
            #expect(try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v3", actor: "c").version == 3)
            let events = try store.auditEvents(after: 0, limit: 100).filter { $0.action.rawValue.hasPrefix("deployment.") }
            #expect(events.map(\.action) == [.deploymentCreated, .deploymentUpdated, .deploymentUpdated])
            #expect(events.map(\.subject) == Array(repeating: "deployment/\(created.id)", count: 3))
            #expect(events[0].detail == #"{"from_version":1,"key_header":"x-user","percent":10,"script":"acme/hello","status":"running","version":2}"#)
            #expect(events[1].detail == #"{"end":null,"finished":false,"percent":50,"previous_status":"running","script":"acme/hello","status":"running","version":2}"#)
            #expect(events[2].detail == #"{"end":"promote","finished":true,"percent":0,"previous_status":"running","released_quarantine":true,"script":"acme/hello","status":"completed","version":2}"#)
            #expect(events.map(\.actor) == ["admin", "deployment", "deployment"])
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentRevertKeepsTheActiveVersionAndIdsAreNeverReused(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            let first = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: nil, percent: 10, status: "running", state: Data(),
                actor: "admin")
            let reverted = try store.updateDeployment(
                id: first.id, status: "rolled-back", state: Data(), percent: 10, end: .revert, actor: "deployment")
            #expect(reverted.finished && reverted.percent == 0 && reverted.status == "rolled-back")
            let summary = try #require(try store.script(customer: "acme", name: "hello"))
            #expect(summary.activeVersion == 1 && summary.latestVersion == 2)
            let active = try #require(try Self.hello(store))
            #expect(active.spec.version == 1 && active.spec.source == "-- v1" && active.spec.split == nil)
            #expect(try store.unfinishedDeployments().isEmpty)
            // The next deployment of the same version takes the next id.
            let second = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: nil, percent: 1, status: "running", state: Data(),
                actor: "admin")
            #expect(second.id == first.id + 1 && second.fromVersion == 1)
            #expect(try Self.hello(store)?.spec.split?.deployment == second.id)
            _ = try store.updateDeployment(id: second.id, status: "completed", state: Data(), percent: 100, end: .promote, actor: "d")
            _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- v3", actor: "c")
            let third = try store.createDeployment(
                customer: "acme", name: "hello", version: 3, keyHeader: nil, percent: 1, status: "running", state: Data(),
                actor: "admin")
            #expect(third.id == second.id + 1 && third.fromVersion == 2)
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10).map(\.id) == [third.id, second.id, first.id])
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 2).map(\.id) == [third.id, second.id])
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10).map(\.status) == ["running", "completed", "rolled-back"])
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentEndsAbortedOnARollbackOrADelete(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCustomers(store)
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v2", actor: "c")
            _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- v3", actor: "c")
            let first = try store.createDeployment(
                customer: "acme", name: "hello", version: 3, keyHeader: nil, percent: 30, status: "running", state: Self.state,
                actor: "admin")
            let back = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "customer:acme")
            #expect(back.activeVersion == 1)
            let aborted = try #require(try store.deployment(id: first.id))
            #expect(aborted.status == "aborted" && aborted.finished && aborted.percent == 0)
            #expect(aborted.state == Self.state, "the engine's state is kept as it was")
            #expect(aborted.updatedAt == back.updatedAt)
            #expect(try Self.hello(store)?.spec.split == nil)
            #expect(try store.unfinishedDeployments().isEmpty)
            let rollback = try #require(try store.auditEvents(after: 0, limit: 100).last)
            #expect(rollback.action == .scriptRolledBack)
            #expect(rollback.detail == #"{"aborted_deployment":\#(first.id),"from":2,"released_quarantine":false,"to":1}"#)
            #expect(storeError {
                _ = try store.updateDeployment(id: first.id, status: "running", state: Data(), percent: 5, end: nil, actor: "d")
            }?.kind == .conflict)

            let second = try store.createDeployment(
                customer: "acme", name: "hello", version: 3, keyHeader: nil, percent: 30, status: "running", state: Data(),
                actor: "admin")
            #expect(second.fromVersion == 1)
            try store.deleteScript(customer: "acme", name: "hello", actor: "customer:acme")
            #expect(try store.deployment(id: second.id)?.status == "aborted")
            #expect(try store.deployment(id: second.id)?.finished == true)
            #expect(try store.unfinishedDeployments().isEmpty)
            #expect(try Self.hello(store) == nil)
            let delete = try #require(try store.auditEvents(after: 0, limit: 100).last)
            #expect(delete.detail == #"{"aborted_deployment":\#(second.id),"active_version":1}"#)
            // The history stays with the name; a live upload brings the script back.
            #expect(try store.deployments(customer: "acme", name: "hello", limit: 10).map(\.id) == [second.id, first.id])
            #expect(try store.putScriptVersion(customer: "acme", name: "hello", source: "-- v4", actor: "c").version == 4)
            #expect(try Self.hello(store)?.spec.split == nil)
            // A rollback or delete of a script with no deployment says nothing of one.
            _ = try store.rollbackScript(customer: "acme", name: "hello", to: 2, actor: "c")
            #expect(try store.auditEvents(after: 0, limit: 100).last?.detail == #"{"from":4,"released_quarantine":false,"to":2}"#)
        }
    }

    @Test(arguments: Backend.allCases)
    func deploymentEverySplitChangeIsAScriptChangeInTheFeed(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try Self.addCandidate(store)
            let feed = try FeedFollower(store)
            defer { feed.close() }
            let hello = StoreChange.script(customer: "acme", name: "hello")
            let copy = try feed.follow()
            #expect(copy.scripts.first { $0.spec.name == "hello" }?.spec.split == nil)

            let created = try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: "x-user", percent: 5, status: "running", state: Data(),
                actor: "admin")
            var step = try feed.follow()
            #expect(step.changes.filter { $0 == hello }.count == 1)
            #expect(step.scripts.map(\.spec.split) == [ScriptSplit(deployment: created.id, version: 2, source: "-- v2", percent: 5, keyHeader: "x-user")])

            _ = try store.updateDeployment(id: created.id, status: "running", state: Data(), percent: 25, end: nil, actor: "d")
            step = try feed.follow()
            #expect(step.changes.filter { $0 == hello }.count == 1)
            #expect(step.scripts.map(\.spec.split?.percent) == [25])

            // Only the engine's state and status changed: nothing for the hosts.
            _ = try store.updateDeployment(id: created.id, status: "running", state: Self.state, percent: 25, end: nil, actor: "d")
            step = try feed.follow()
            #expect(!step.changes.contains(hello))
            #expect(step.scripts.isEmpty)

            _ = try store.updateDeployment(id: created.id, status: "paused", state: Data(), percent: 0, end: nil, actor: "d")
            step = try feed.follow()
            #expect(step.changes.filter { $0 == hello }.count == 1)
            #expect(step.scripts.map(\.spec.split) == [nil])

            _ = try store.updateDeployment(id: created.id, status: "completed", state: Data(), percent: 100, end: .promote, actor: "d")
            step = try feed.follow()
            #expect(step.changes.filter { $0 == hello }.count == 1)
            #expect(step.scripts.map(\.spec.version) == [2])
            #expect(step.scripts.map(\.spec.source) == ["-- v2"])
            #expect(step.scripts.map(\.spec.split) == [nil])

            // A rollback under a running deployment: the split goes with the active version.
            let next = try store.createDeployment(
                customer: "acme", name: "hello", version: 1, keyHeader: nil, percent: 40, status: "running", state: Data(),
                actor: "admin")
            step = try feed.follow()
            #expect(step.scripts.map(\.spec.split?.deployment) == [next.id])
            #expect(step.scripts.map(\.spec.split?.source) == ["-- v1"])
            _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "c")
            step = try feed.follow()
            #expect(step.changes.filter { $0 == hello }.count == 1)
            #expect(step.scripts.map(\.spec.version) == [1])
            #expect(step.scripts.map(\.spec.split) == [nil])
            // What the feed delivered is what the store serves.
            #expect(try feed.follow(copying: true).scripts == store.activeScripts())
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

/// A host agent's view of a store's change feed, on either backend: a
/// `ChangeFeedReader` on the SQLite file, a watch on etcd (`EtcdFeedSource`).
private final class FeedFollower {
    private let source: any ChangeFeedSource
    private let store: any ControlStore
    private var revision: Int?

    init(_ store: any BulkheadStore) throws {
        switch store {
        case let sqlite as SQLiteStore:
            source = try ChangeFeedReader(path: sqlite.path)
            self.store = sqlite
        case let etcd as EtcdStore:
            source = EtcdFeedSource(store: etcd)
            self.store = etcd
        default:
            throw EtcdInstall.Failure(description: "no change feed for \(type(of: store))")
        }
    }

    /// Reads the feed until it reflects the store's revision now: the changes read
    /// and the scripts they named (everything, as a full copy, the first time and
    /// when `copying`).
    func follow(copying: Bool = false) throws -> (
        changes: [StoreChange], scripts: [ActiveScript], removedScripts: [ScriptAddress], removedCustomers: [String]
    ) {
        if copying { revision = nil }
        let target = try store.latestRevision()
        let deadline = ContinuousClock.now + .seconds(20)
        var changes: [StoreChange] = []
        var scripts: [ActiveScript] = []
        var removedScripts: [ScriptAddress] = []
        var removedCustomers: [String] = []
        repeat {
            let read = try source.update(after: revision, limit: 10_000)
            if read.update.isFullCopy || read.update.revision != revision {
                changes += read.entries.map(\.change)
                scripts += read.update.scripts
                removedScripts += read.update.removedScripts
                removedCustomers += read.update.removedCustomers
                revision = read.update.revision
            } else {
                guard ContinuousClock.now < deadline else {
                    throw EtcdInstall.Failure(description: "the feed is at \(revision ?? -1), not \(target), after 20 s")
                }
                usleep(10_000)
            }
        } while (revision ?? -1) < target
        return (changes, scripts, removedScripts, removedCustomers)
    }

    func close() {
        source.close()
    }
}
