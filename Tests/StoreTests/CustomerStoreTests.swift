import Foundation
import Store
import Testing

@Suite struct CustomerStoreTests {
    @Test func addGetListAndFindByToken() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        let acme = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme-token"), actor: "cli")
        _ = try store.addCustomer(name: "beta-co", cohort: "free", tokenHash: hash("beta-token"), actor: "cli")

        #expect(acme.name == "acme")
        #expect(acme.cohort == "pro")
        #expect(acme.createdAt == SteppingClock.start)
        #expect(try store.customer(named: "acme") == acme)
        #expect(try store.customer(named: "nobody") == nil)
        #expect(try store.customers().map(\.name) == ["acme", "beta-co"])
        #expect(try store.customer(withTokenHash: hash("acme-token")) == acme)
        #expect(try store.customer(withTokenHash: hash("beta-token"))?.name == "beta-co")
        #expect(try store.customer(withTokenHash: hash("wrong-token")) == nil)
        #expect(try store.customer(withTokenHash: "not a hash") == nil)
    }

    @Test func duplicateNameIsAClearConflict() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("one"), actor: "cli")
        let error = storeError { _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("two"), actor: "cli") }
        #expect(error?.kind == .conflict)
        #expect(error?.description.contains("customer \"acme\" already exists") == true)
        #expect(try store.customer(named: "acme")?.cohort == "pro")
    }

    @Test func sameTokenTwiceIsRefused() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("shared"), actor: "cli")
        let error = storeError { _ = try store.addCustomer(name: "other", cohort: "pro", tokenHash: hash("shared"), actor: "cli") }
        #expect(error?.kind == .conflict)
        #expect(try store.customer(named: "other") == nil)
    }

    @Test func badInputIsInvalid() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        for name in ["", "Acme", "-acme", "acme_co", String(repeating: "a", count: 64)] {
            let error = storeError { _ = try store.addCustomer(name: name, cohort: "pro", tokenHash: hash(name), actor: "cli") }
            #expect(error?.kind == .invalid, "name \(name.debugDescription)")
        }
        #expect(storeError { _ = try store.addCustomer(name: "acme", cohort: "Pro", tokenHash: hash("x"), actor: "cli") }?.kind == .invalid)
        #expect(storeError { _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: "raw-token", actor: "cli") }?.kind == .invalid)
        #expect(storeError { _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("x"), actor: "") }?.kind == .invalid)
        #expect(try store.customers().isEmpty)
    }

    @Test func moveToAnotherCohort() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: hash("t"), actor: "cli")
        let moved = try store.moveCustomer("acme", toCohort: "enterprise", actor: "admin")
        #expect(moved.cohort == "enterprise")
        #expect(try store.customer(named: "acme")?.cohort == "enterprise")
        #expect(storeError { _ = try store.moveCustomer("ghost", toCohort: "pro", actor: "admin") }?.kind == .notFound)
    }
}
