import BulkheadCore
import Foundation
import Store
import Testing

/// The change feed: a revision written with each change the data plane serves from.
@Suite struct ChangeFeedTests {
    @Test func eachChangeWritesARevisionThatOnlyGrows() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        #expect(try store.feedBounds() == FeedBounds(latest: 0, oldest: nil))
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "admin")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 2", actor: "admin")
        _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "admin")
        _ = try store.moveCustomer("acme", toCohort: "pro", actor: "admin")
        try store.setWorkerCount(2, ofPool: "free", actor: "scale")
        try store.setActiveVersion(3, of: .rules, inPool: "free", actor: "rollout")
        try store.deleteScript(customer: "acme", name: "hello", actor: "admin")
        let entries = try store.changes(after: 0, limit: 100)
        #expect(entries.map(\.change) == [
            .customer("acme"), .script(customer: "acme", name: "hello"), .script(customer: "acme", name: "hello"),
            .script(customer: "acme", name: "hello"), .customer("acme"), .setting(SettingKey.workers(pool: "free")), .activeArtifact(.rules, pool: "free"),
            .script(customer: "acme", name: "hello"),
        ])
        let revisions = entries.map(\.revision)
        #expect(revisions == revisions.sorted() && Set(revisions).count == revisions.count)
        #expect(try store.feedBounds() == FeedBounds(latest: revisions.last ?? -1, oldest: revisions.first))
        // A read changes nothing.
        _ = try store.scripts(ofCustomer: "acme")
        #expect(try store.feedBounds().latest == revisions.last)
    }

    @Test func aRefusedWriteLeavesNoChangeRow() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        let before = try store.feedBounds()
        // Refused inside the transaction (no earlier version; unknown customer; taken name).
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "admin")
        let afterUpload = try store.feedBounds()
        #expect(throws: StoreError.self) { _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "admin") }
        #expect(throws: StoreError.self) { _ = try store.putScriptVersion(customer: "nobody", name: "x", source: "x", actor: "admin") }
        #expect(throws: StoreError.self) {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: TokenHash.of(token: "t2"), actor: "admin")
        }
        #expect(afterUpload.latest == before.latest + 1)
        #expect(try store.feedBounds() == afterUpload)
        #expect(try store.changes(after: afterUpload.latest, limit: 10).isEmpty)
    }

    @Test func changesAfterARevisionComeInOrderInBoundedBatches() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        for index in 0..<10 {
            _ = try store.putScriptVersion(customer: "acme", name: "s\(index)", source: "return \(index)", actor: "admin")
        }
        let all = try store.changes(after: 0, limit: 100)
        #expect(all.count == 11)
        let middle = all[4].revision
        let batch = try store.changes(after: middle, limit: 3)
        #expect(batch.map(\.revision) == Array(all[5..<8].map(\.revision)))
        #expect(batch.map(\.change) == (4..<7).map { StoreChange.script(customer: "acme", name: "s\($0)") })
        #expect(throws: StoreError.self) { _ = try store.changes(after: 0, limit: 0) }
        let bounds = try store.feedBounds()
        #expect(bounds.canCatchUp(from: middle))
        #expect(bounds.canCatchUp(from: bounds.latest))
        #expect(!bounds.canCatchUp(from: bounds.latest + 5), "a replica ahead of the store (restored from a backup) copies everything")
    }

    @Test func theFollowerReadsOnlyTheRowsTheChangesName() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        for index in 0..<50 {
            _ = try store.putScriptVersion(customer: "acme", name: "s\(index)", source: "return \(index)", actor: "admin")
        }
        let reader = try ChangeFeedReader(path: store.path)
        defer { reader.close() }
        let copy = try reader.update(after: nil)
        #expect(copy.update.isFullCopy && copy.update.scripts.count == 50 && copy.scriptsRead == 50)
        let version = try reader.dataVersion()
        #expect(try reader.dataVersion() == version, "no commit, no news")
        // A NUL byte survives the trip.
        _ = try store.putScriptVersion(customer: "acme", name: "s7", source: "return 'a\u{0}b'", actor: "admin")
        #expect(try reader.dataVersion() != version)
        let next = try reader.update(after: copy.update.revision)
        #expect(!next.update.isFullCopy && next.scriptsRead == 1)
        #expect(next.update.scripts.map(\.spec.source) == ["return 'a\u{0}b'"])
        #expect(next.update.scripts.first?.spec.version == 2)
        try store.deleteScript(customer: "acme", name: "s8", actor: "admin")
        let deleted = try reader.update(after: next.update.revision)
        #expect(deleted.update.removedScripts == [ScriptAddress(customer: "acme", name: "s8")])

        // The replica applies it with its revision, in one transaction.
        let replica = try HostReplica(path: directory.path + "/host.sqlite")
        #expect(try replica.appliedRevision() == nil)
        try replica.apply(copy.update)
        try replica.apply(next.update)
        try replica.apply(deleted.update)
        let contents = try replica.contents()
        #expect(contents.revision == deleted.update.revision)
        #expect(contents.scripts.count == 49)
        #expect(contents.scripts.first { $0.name == "s7" }?.source == "return 'a\u{0}b'")
        #expect(contents.customers == ["acme": "free"])
    }

    @Test func aRemovedCustomerLeavesTheReplicaWithItsScripts() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        _ = try store.addCustomer(name: "beta", cohort: "pro", tokenHash: TokenHash.of(token: "t2"), actor: "admin")
        for name in ["one", "two"] {
            _ = try store.putScriptVersion(customer: "acme", name: name, source: "return 1", actor: "admin")
        }
        _ = try store.putScriptVersion(customer: "beta", name: "one", source: "return 2", actor: "admin")
        let reader = try ChangeFeedReader(path: store.path)
        defer { reader.close() }
        let replica = try HostReplica(path: directory.path + "/host.sqlite")
        let copy = try reader.update(after: nil)
        try replica.apply(copy.update)
        try replica.setQuarantine(ScriptAddress(customer: "acme", name: "one"), version: 1, reason: "crashed", actor: "supervisor")

        try store.removeCustomer(name: "acme", actor: "admin")
        let removal = try reader.update(after: copy.update.revision)
        #expect(removal.entries.map(\.change) == [
            .script(customer: "acme", name: "one"), .script(customer: "acme", name: "two"), .customer("acme"),
        ])
        #expect(removal.update.removedCustomers == ["acme"])
        #expect(removal.update.removedScripts == [
            ScriptAddress(customer: "acme", name: "one"), ScriptAddress(customer: "acme", name: "two"),
        ])
        #expect(removal.update.customers.isEmpty && removal.update.scripts.isEmpty)
        let lifted = try replica.apply(removal.update)
        #expect(lifted == [ScriptAddress(customer: "acme", name: "one")], "the quarantine goes with the script")
        let contents = try replica.contents()
        #expect(contents.customers == ["beta": "pro"])
        #expect(contents.scripts.map { "\($0.customer)/\($0.name)" } == ["beta/one"])
        // A removal the replica learns without its scripts' changes drops them too.
        var bare = ReplicaUpdate(revision: removal.update.revision + 1, isFullCopy: false)
        bare.removedCustomers = ["beta"]
        try replica.apply(bare)
        #expect(try replica.contents().customers.isEmpty)
        #expect(try replica.contents().scripts.isEmpty)
    }

    @Test func theFollowerReadsADeploymentsSplitWithTheCandidatesSource() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "free", tokenHash: TokenHash.of(token: "t1"), actor: "admin")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "admin")
        // A NUL byte in the candidate survives the trip too.
        let candidate = "return 'a\u{0}b'"
        _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: candidate, actor: "admin")
        let reader = try ChangeFeedReader(path: store.path)
        defer { reader.close() }
        let replica = try HostReplica(path: directory.path + "/host.sqlite")
        let copy = try reader.update(after: nil)
        #expect(copy.update.scripts.map(\.spec.split) == [nil])
        try replica.apply(copy.update)

        let deployment = try store.createDeployment(
            customer: "acme", name: "hello", version: 2, keyHeader: "x-user", percent: 10, status: "running", state: Data(),
            actor: "admin")
        let split = ScriptSplit(deployment: deployment.id, version: 2, source: candidate, percent: 10, keyHeader: "x-user")
        let started = try reader.update(after: copy.update.revision)
        #expect(started.entries.map(\.change) == [.script(customer: "acme", name: "hello")])
        #expect(started.scriptsRead == 1)
        #expect(started.update.scripts.map(\.spec.version) == [1])
        #expect(started.update.scripts.map(\.spec.split) == [split])
        try replica.apply(started.update)
        #expect(try replica.contents().scripts.map(\.split) == [split])
        #expect(try reader.update(after: nil).update.scripts.map(\.spec.split) == [split], "a full copy carries it too")

        _ = try store.updateDeployment(id: deployment.id, status: "completed", state: Data(), percent: 100, end: .promote, actor: "d")
        let promoted = try reader.update(after: started.update.revision)
        #expect(promoted.update.scripts.map(\.spec) == [
            ScriptSpec(customer: "acme", name: "hello", version: 2, source: candidate, split: nil),
        ])
        try replica.apply(promoted.update)
        #expect(try replica.contents().scripts == [ScriptSpec(customer: "acme", name: "hello", version: 2, source: candidate)])
    }

    @Test func aNewVersionLiftsTheHostsQuarantine() throws {
        let directory = try TemporaryDirectory()
        let replica = try HostReplica(path: directory.path + "/host.sqlite")
        var update = ReplicaUpdate(revision: 1, isFullCopy: true)
        update.customers = ["acme": "free"]
        update.scripts = [ActiveScript(
            spec: ScriptSpec(customer: "acme", name: "x", version: 1, source: "x"), cohort: "free",
            sha256: SHA256Hasher.hex("x"), quarantined: false)]
        try replica.apply(update)
        let script = ScriptAddress(customer: "acme", name: "x")
        try replica.setQuarantine(script, version: 1, reason: "ended 3 workers", actor: "watchdog")
        #expect(try replica.contents().quarantines.map(\.script) == [script])
        var same = ReplicaUpdate(revision: 2, isFullCopy: false)
        same.customers = ["acme": "free"]
        #expect(try replica.apply(same).isEmpty, "a change that leaves the version keeps the quarantine")
        var next = ReplicaUpdate(revision: 3, isFullCopy: false)
        next.scripts = [ActiveScript(
            spec: ScriptSpec(customer: "acme", name: "x", version: 2, source: "y"), cohort: "free",
            sha256: SHA256Hasher.hex("y"), quarantined: false)]
        #expect(try replica.apply(next) == [script])
        #expect(try replica.contents().quarantines.isEmpty)
        #expect(try replica.auditEvents(after: 0, limit: 10).map(\.action) == [.scriptQuarantined])
    }
}
