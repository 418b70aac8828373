import BulkheadCore
import Etcd
import EtcdStore
import Foundation
import Store
import Synchronization
import Testing

// MARK: - A host agent's loop, as the supervisor runs it

/// A replica that follows a source as `Supervisor.followFeed()` does: look at the
/// token, read the update after the applied revision, apply it.
final class FollowingReplica: @unchecked Sendable {
    let replica: HostReplica
    let source: EtcdFeedSource
    private let directory: String?
    /// Every read applied, oldest first.
    private(set) var reads: [FeedRead] = []

    /// A new replica in a temporary directory.
    init(source: EtcdFeedSource) throws {
        let directory = NSTemporaryDirectory() + "bulkhead-feed-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        replica = try HostReplica(path: directory + "/host.sqlite")
        self.directory = directory
        self.source = source
    }

    /// An existing replica (a host agent started again on its file).
    init(replica: HostReplica, source: EtcdFeedSource) {
        self.replica = replica
        self.source = source
        directory = nil
    }

    /// Follows until the replica reflects `revision` (or later); throws after `timeout`.
    func catchUp(to revision: Int, timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        var token: Int?
        while true {
            let applied = try replica.appliedRevision()
            if let applied, applied >= revision { return }
            guard ContinuousClock.now < deadline else {
                throw EtcdInstall.Failure(description: "the replica is at \(applied ?? -1), not \(revision), after \(timeout)")
            }
            let now = try source.changeToken()
            if applied != nil, now == token {
                usleep(10_000)
                continue
            }
            let read = try source.update(after: applied, limit: 10_000)
            if read.update.isFullCopy || read.update.revision != applied {
                try replica.apply(read.update)
                reads.append(read)
            }
            if read.update.isFullCopy || read.update.revision >= read.bounds.latest { token = now }
        }
    }

    /// The reads applied after the first `count`.
    func reads(after count: Int) -> [FeedRead] { Array(reads.dropFirst(count)) }

    func close() {
        source.close()
        guard let directory else { return }
        try? replica.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Follows until the replica reflects the store's revision now.
private func catchUp(_ host: FollowingReplica, _ store: EtcdStore, timeout: Duration = .seconds(20)) async throws {
    let target = try await revision(store)
    try await onStoreThread { try host.catchUp(to: target, timeout: timeout) }
}

/// The store's revision now.
private func revision(_ store: EtcdStore) async throws -> Int {
    try await onStoreThread { try store.latestRevision() }
}

/// Checks the replica holds what the store serves: customers, active scripts,
/// running rollouts, active versions.
private func expectSameContents(
    _ replica: HostReplica, _ store: EtcdStore, pools: [String], sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let contents = try replica.contents()
    let (customers, active, running, settings) = try await onStoreThread {
        (try store.customers(), try store.activeScripts(), try store.runningRollout(kind: .runtime), try store.settings())
    }
    #expect(contents.customers == Dictionary(uniqueKeysWithValues: customers.map { ($0.name, $0.cohort) }), sourceLocation: sourceLocation)
    #expect(contents.scripts == active.map(\.spec), sourceLocation: sourceLocation)
    #expect(contents.rollouts == running.map { [ReplicaRollout(id: $0.id, kind: $0.kind, state: $0.state)] } ?? [], sourceLocation: sourceLocation)
    let expected = pools.compactMap { pool -> ReplicaActiveVersion? in
        settings[SettingKey.activeVersion(.runtime, pool: pool)].flatMap(Int.init).map {
            ReplicaActiveVersion(kind: .runtime, pool: pool, version: $0)
        }
    }
    #expect(contents.activeVersions == expected, sourceLocation: sourceLocation)
}

/// A source's settings for tests: checks often, so a stuck watch shows quickly.
private let fastChecks = EtcdFeedConfiguration(
    checkInterval: .milliseconds(300), stuckAfter: .milliseconds(900), initialBackoff: .milliseconds(50),
    maximumBackoff: .milliseconds(500))

@Suite("EtcdFeedSource: a host agent follows the etcd store by watch", .serialized, .etcdServer)
struct EtcdFeedSourceTests {
    private func makeStore(prefix: String = uniquePrefix()) throws -> (EtcdClient, EtcdStore) {
        let client = try EtcdClient(endpoints: try SharedEtcd.current().endpoints)
        return (client, try EtcdStore(client: client, prefix: prefix))
    }

    @Test("writes through the store are followed: customers, uploads, a delete, a cohort move, a rollout with active versions")
    func followsWrites() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let host = try FollowingReplica(source: EtcdFeedSource(store: store, configuration: fastChecks))
        defer { host.close() }

        try await onStoreThread { try host.catchUp(to: 0) }
        #expect(host.reads.first?.update.isFullCopy == true)

        try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.addCustomer(name: "beta", cohort: "free", tokenHash: hash("beta"), actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 'hello'", actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "two", source: "return 2", actor: "cli")
            _ = try store.putScriptVersion(customer: "beta", name: "x", source: String(repeating: "-- big\n", count: 40_000), actor: "cli")
        }
        try await catchUp(host, store)
        try await expectSameContents(host.replica, store, pools: ["pro", "free"])

        // One upload: only that script is read, and it is live within one watch answer.
        var seen = host.reads.count
        let written = ContinuousClock.now
        try await onStoreThread { _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 'v2'", actor: "cli") }
        try await catchUp(host, store)
        let followedIn = milliseconds(since: written)
        let upload = host.reads(after: seen)
        #expect(upload.map(\.scriptsRead).reduce(0, +) == 1)
        #expect(upload.allSatisfy { !$0.update.isFullCopy })
        #expect(upload.flatMap(\.update.scripts).map(\.spec.version) == [2])
        print("one upload: \(upload.map(\.scriptsRead).reduce(0, +)) script read, replica applied \(String(format: "%.1f", followedIn)) ms after the write returned")
        try await expectSameContents(host.replica, store, pools: ["pro", "free"])

        // A delete is a removal; a cohort move changes the customer only.
        seen = host.reads.count
        try await onStoreThread {
            try store.deleteScript(customer: "acme", name: "two", actor: "cli")
            _ = try store.moveCustomer("beta", toCohort: "pro", actor: "cli")
        }
        try await catchUp(host, store)
        let moves = host.reads(after: seen)
        #expect(moves.flatMap(\.update.removedScripts) == [ScriptAddress(customer: "acme", name: "two")])
        #expect(moves.map(\.scriptsRead).reduce(0, +) == 1)
        #expect(moves.last?.update.customers["beta"] == "pro" || moves.first?.update.customers["beta"] == "pro")
        try await expectSameContents(host.replica, store, pools: ["pro", "free"])

        // A rollout, with the pool's active version: the stage rows and the artifacts they name.
        let rollout = try await onStoreThread {
            _ = try store.putArtifact(kind: .runtime, content: "return 'runtime 1'", actor: "cli")
            _ = try store.putArtifact(kind: .runtime, content: "return 'runtime 2'", actor: "cli")
            try store.setSetting(SettingKey.activeVersion(.runtime, pool: "pro"), to: "1", actor: "cli")
            return try store.createRollout(kind: .runtime, version: 2, fromVersion: 1, status: "canary", state: Data("s1".utf8), actor: "driver")
        }
        try await catchUp(host, store)
        try await expectSameContents(host.replica, store, pools: ["pro", "free"])
        #expect(try host.replica.artifactContent(kind: .runtime, version: 1) == "return 'runtime 1'")
        #expect(try host.replica.artifactContent(kind: .runtime, version: 2) == "return 'runtime 2'")
        #expect(try host.replica.contents().rollouts.map(\.state) == [Data("s1".utf8)])

        seen = host.reads.count
        try await onStoreThread {
            _ = try store.updateRollout(id: rollout.id, status: "canary", state: Data("s2".utf8), finished: false, actor: "driver")
            _ = try store.updateRollout(id: rollout.id, status: "completed", state: Data("s3".utf8), finished: true, actor: "driver")
            try store.setSetting(SettingKey.activeVersion(.runtime, pool: "pro"), to: "2", actor: "driver")
        }
        try await catchUp(host, store)
        #expect(host.reads(after: seen).flatMap(\.update.endedRollouts).contains(rollout.id))
        #expect(host.reads(after: seen).map(\.scriptsRead).reduce(0, +) == 0)
        try await expectSameContents(host.replica, store, pools: ["pro", "free"])

        // A full copy read now by a fresh source is what the followed replica holds.
        let fresh = EtcdFeedSource(store: store)
        defer { fresh.close() }
        let copy = try await onStoreThread { try fresh.update(after: nil, limit: 10_000) }
        let contents = try host.replica.contents()
        #expect(copy.update.isFullCopy)
        #expect(copy.update.customers == contents.customers)
        #expect(copy.update.scripts.map(\.spec) == contents.scripts)
        #expect(copy.update.activeVersions == contents.activeVersions)
        #expect(copy.update.rollouts == contents.rollouts)
        #expect(host.source.health.cutOffSince == nil)
        print("followed: \(host.reads.count) reads, \(host.reads.map(\.scriptsRead).reduce(0, +)) scripts read, health \(host.source.health)")
    }

    @Test("a deployment's split is followed with the candidate's source, and a host started again serves it from its replica")
    func followsDeploymentSplits() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let host = try FollowingReplica(source: EtcdFeedSource(store: store, configuration: fastChecks))
        defer { host.close() }
        // A candidate larger than one chunk, with a NUL byte.
        let candidate = "return 'v2\u{0}'\n" + String(repeating: "-- padding\n", count: 120_000)
        let deployment = try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 'v1'", actor: "cli")
            _ = try store.putScriptVersionInactive(customer: "acme", name: "hello", source: candidate, actor: "cli")
            return try store.createDeployment(
                customer: "acme", name: "hello", version: 2, keyHeader: "x-user", percent: 10, status: "running", state: Data(),
                actor: "driver")
        }
        try await catchUp(host, store)
        let split = ScriptSplit(deployment: deployment.id, version: 2, source: candidate, percent: 10, keyHeader: "x-user")
        #expect(try host.replica.contents().scripts.map(\.split) == [split])
        try await expectSameContents(host.replica, store, pools: ["pro"])

        // A step: the script is read again, with both sources.
        var seen = host.reads.count
        try await onStoreThread {
            _ = try store.updateDeployment(id: deployment.id, status: "running", state: Data(), percent: 50, end: nil, actor: "driver")
        }
        try await catchUp(host, store)
        #expect(host.reads(after: seen).map(\.scriptsRead).reduce(0, +) == 1)
        #expect(host.reads(after: seen).flatMap(\.update.scripts).map(\.spec.split?.percent) == [50])
        try await expectSameContents(host.replica, store, pools: ["pro"])

        // Only the engine's state: nothing for the hosts to read.
        seen = host.reads.count
        try await onStoreThread {
            _ = try store.updateDeployment(id: deployment.id, status: "running", state: Data("s".utf8), percent: 50, end: nil, actor: "driver")
        }
        try await catchUp(host, store)
        #expect(host.reads(after: seen).map(\.scriptsRead).reduce(0, +) == 0)

        // A host started again reads the same split from its replica file, etcd or not.
        let reopened = try HostReplica(path: host.replica.path)
        var grown = split
        grown.percent = 50
        #expect(try reopened.contents().scripts.map(\.split) == [grown])
        try reopened.close()

        // Promoted: the candidate is the active version, without a split.
        seen = host.reads.count
        try await onStoreThread {
            _ = try store.updateDeployment(id: deployment.id, status: "completed", state: Data(), percent: 100, end: .promote, actor: "driver")
        }
        try await catchUp(host, store)
        #expect(try host.replica.contents().scripts == [ScriptSpec(customer: "acme", name: "hello", version: 2, source: candidate)])
        try await expectSameContents(host.replica, store, pools: ["pro"])
    }

    @Test("two hosts hold host/NAME on their leases, written once: the changes they apply write nothing more")
    func hostPresence() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let hosts = try ["h1", "h2"].map { _ in try FollowingReplica(source: EtcdFeedSource(store: store, configuration: fastChecks)) }
        let presences = try ["h1", "h2"].map { name in try EtcdHostPresence(store: store, name: name, group: "g1", ttl: 5) }
        defer { for host in hosts { host.close() } }
        for presence in presences { presence.start() }
        let deadline = ContinuousClock.now + .seconds(20)
        while presences.contains(where: { $0.written == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(presences.allSatisfy { $0.written != nil }, "both keys written")
        // Each host applies a change (and the other's key): neither writes its key again,
        // so the change costs one revision whatever the number of hosts.
        try await onStoreThread { _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli") }
        let settled = try await revision(store)
        for _ in 0..<20 {
            for host in hosts { try await catchUp(host, store) }
            try await Task.sleep(for: .milliseconds(100))
        }
        for host in hosts { #expect((host.source.health.appliedRevision ?? 0) >= settled, "\(host.source.health)") }
        let later = try await revision(store)
        #expect(later == settled, "hosts wrote their keys again as they applied the change: \(settled) → \(later)")
        let keys = try await client.range(prefix: store.prefix + "host/")
        let records = try keys.kvs.map { try JSONDecoder().decode(RecordView.self, from: Data($0.value)) }
        #expect(records.map(\.name) == ["h1", "h2"])
        #expect(keys.kvs.allSatisfy { $0.lease != 0 })
        print("host keys: \(keys.kvs.map(\.valueString)); store revision \(settled) → \(later) over 2 s of following")
        // Stopped, a host's key goes with its lease.
        await presences[0].stop()
        let left = try await client.range(prefix: store.prefix + "host/").kvs.map(\.keyString)
        #expect(left == [store.prefix + "host/h2"])
        await presences[1].stop()
    }

    @Test("a batch limit never splits a revision, and the rest follows on the next look")
    func limitKeepsRevisionsWhole() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let source = EtcdFeedSource(store: store, configuration: fastChecks)
        defer { source.close() }
        let start = try await onStoreThread { try source.update(after: nil, limit: 10_000) }.update.revision
        try await onStoreThread {
            for name in ["a", "b", "c"] {
                _ = try store.addCustomer(name: name, cohort: "pro", tokenHash: hash(name), actor: "cli")
            }
        }
        let target = try await revision(store)
        let deadline = ContinuousClock.now + .seconds(10)
        while source.health.watchedRevision < target, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let first = try await onStoreThread { try source.update(after: start, limit: 1) }
        #expect(first.update.customers.count == 1)
        #expect(first.update.revision < first.bounds.latest)
        let rest = try await onStoreThread { try source.update(after: first.update.revision, limit: 10_000) }
        #expect(rest.update.customers.count == 2)
        #expect(rest.update.revision == target)
    }

    @Test("etcd compacted past the host's revision: a full copy at one revision, then the watch goes on from it")
    func compactionGivesFullCopy() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let first = try FollowingReplica(source: EtcdFeedSource(store: store, configuration: fastChecks))
        try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "cli")
        }
        try await catchUp(first, store)
        let stoppedAt = try #require(try first.replica.appliedRevision())
        // The host stops; meanwhile the store changes and etcd compacts its history.
        first.source.close()
        try await onStoreThread {
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 2", actor: "cli")
            _ = try store.addCustomer(name: "beta", cohort: "free", tokenHash: hash("beta"), actor: "cli")
            _ = try store.putScriptVersion(customer: "beta", name: "x", source: "return 'x'", actor: "cli")
            try store.deleteScript(customer: "acme", name: "hello", actor: "cli")
        }
        let compactedTo = try #require(try await onStoreThread { try store.compact(keepingRevisions: 0) })
        #expect(Int(compactedTo) > stoppedAt)

        // Back, on the same replica: the watch from its revision is refused as compacted.
        let source = EtcdFeedSource(store: store, configuration: fastChecks)
        let host = FollowingReplica(replica: first.replica, source: source)
        defer {
            source.close()
            first.close()
        }
        let target = try await revision(store)
        let started = ContinuousClock.now
        try await onStoreThread { try host.catchUp(to: target) }
        print("resync after compaction: \(String(format: "%.1f", milliseconds(since: started))) ms, reads \(host.reads.map { $0.update.isFullCopy ? "full@\($0.update.revision)" : "changes@\($0.update.revision)" })")
        #expect(host.reads.contains { $0.update.isFullCopy })
        #expect(source.health.fullCopies == 1)
        try await expectSameContents(first.replica, store, pools: ["pro", "free"])

        // The watch resumed after the copy: the next upload comes as a change, not a copy.
        let seen = host.reads.count
        try await onStoreThread { _ = try store.putScriptVersion(customer: "beta", name: "x", source: "return 'x2'", actor: "cli") }
        try await catchUp(host, store)
        let after = Array(host.reads.dropFirst(seen))
        #expect(!after.isEmpty && after.allSatisfy { !$0.update.isFullCopy })
        #expect(after.map(\.scriptsRead).reduce(0, +) == 1)
        #expect(source.health.fullCopies == 1)
        try await expectSameContents(first.replica, store, pools: ["pro", "free"])
    }
}

// MARK: - Clusters of their own

@Suite("EtcdFeedSource when etcd fails", .serialized)
struct EtcdFeedSourceFailureTests {
    @Test("3 members, the watched one paused (SIGSTOP): the source notices and follows again through another")
    func pausedMemberIsNoticed() async throws {
        let timeouts = EtcdConfiguration.Timeouts(connect: .seconds(1), request: .seconds(2), failover: .seconds(6))
        try await withEtcd(size: 3, timeouts: timeouts) { cluster, writer in
            // The source's client tries a follower first, so the watch most likely
            // runs there (pausing the leader also makes an election, not the point).
            let leader = try #require(try await cluster.leader())
            let followers = cluster.members.filter { $0 !== leader }
            let endpoints = [followers[0].clientURL, followers[1].clientURL, leader.clientURL]
            let reader = try EtcdClient(endpoints: endpoints, timeouts: timeouts)
            defer { Task { await reader.shutdown() } }
            let prefix = uniquePrefix()
            let store = try EtcdStore(client: writer, prefix: prefix)
            let source = EtcdFeedSource(store: try EtcdStore(client: reader, prefix: prefix), configuration: fastChecks)
            let host = try FollowingReplica(source: source)
            defer { host.close() }
            try await onStoreThread {
                _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
                _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "cli")
            }
            try await catchUp(host, store)
            try await onStoreThread { _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 2", actor: "cli") }
            try await catchUp(host, store)
            // The member the watch runs on, as the source saw it created.
            let endpoint = try #require(source.health.watchEndpoint)
            let url = try #require(URL(string: endpoint))
            let watched = try #require(cluster.member(at: url))
            let before = source.health

            // The upload goes through the members still running: a write sent to the
            // paused one gets no answer and fails as a timeout (it may have landed).
            let others = try EtcdClient(endpoints: cluster.members.filter { $0 !== watched }.map(\.clientURL), timeouts: timeouts)
            defer { Task { await others.shutdown() } }
            let uploader = try EtcdStore(client: others, prefix: prefix)
            watched.pause()
            defer { watched.resume() }
            let paused = ContinuousClock.now
            try await onStoreThread { _ = try uploader.putScriptVersion(customer: "acme", name: "hello", source: "return 3", actor: "cli") }
            try await catchUp(host, store, timeout: .seconds(30))
            let seconds = (ContinuousClock.now - paused).seconds
            let after = source.health
            print("watched member \(watched.name)\(watched === leader ? " (the leader)" : "") paused: upload applied after \(String(format: "%.2f", seconds)) s, now watching \(after.watchEndpoint ?? "-"), health \(after)")
            #expect(after.stuckRestarts > before.stuckRestarts)
            #expect(after.watchesCreated > before.watchesCreated)
            #expect(after.watchEndpoint != endpoint)
            #expect(try host.replica.contents().scripts.map(\.version) == [3])
            #expect(seconds < 20)
        }
    }

    @Test("etcd gone: changeToken answers at once and stays put, update fails as unreachable within the client's timeouts")
    func etcdGoneIsFailStatic() async throws {
        let timeouts = EtcdConfiguration.Timeouts(connect: .seconds(1), request: .seconds(2), failover: .seconds(3))
        try await withEtcd(timeouts: timeouts) { cluster, client in
            let store = try EtcdStore(client: client, prefix: uniquePrefix())
            let source = EtcdFeedSource(store: store, configuration: fastChecks)
            let host = try FollowingReplica(source: source)
            defer { host.close() }
            try await onStoreThread {
                _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
                _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "return 1", actor: "cli")
            }
            try await catchUp(host, store)
            let applied = try #require(try host.replica.appliedRevision())

            cluster.stop()
            let stopped = Date()
            let token = try source.changeToken()
            var slowest = Duration.zero
            for _ in 0..<50 {
                let start = ContinuousClock.now
                #expect(try source.changeToken() == token)
                slowest = max(slowest, ContinuousClock.now - start)
                try await Task.sleep(for: .milliseconds(40))
            }
            // Nothing new: an update after the applied revision needs no etcd.
            let idle = ContinuousClock.now
            let read = try await onStoreThread { try source.update(after: applied, limit: 10_000) }
            #expect(read.update.revision == applied)
            let idleMilliseconds = milliseconds(since: idle)
            // A read that needs etcd fails as unreachable, bounded by the client's timeouts.
            let started = ContinuousClock.now
            let error = try await onStoreThread { storeError { _ = try source.update(after: nil, limit: 10_000) } }
            let failedIn = (ContinuousClock.now - started).seconds
            #expect(error?.kind == .unreachable)
            #expect(failedIn < (timeouts.connect + timeouts.request + timeouts.failover).seconds + 1)
            let cutOff = source.health.cutOffSince
            #expect(cutOff != nil)
            #expect(source.health.watchedRevision == applied)
            #expect(try host.replica.contents().scripts.map(\.name) == ["hello"])
            print("etcd gone: changeToken slowest \(String(format: "%.3f", slowest.seconds * 1_000_000)) µs over 50 calls, token \(token) unchanged; update after the applied revision \(String(format: "%.2f", idleMilliseconds)) ms; full copy failed as \(error.map { "\($0.kind)" } ?? "nothing") in \(String(format: "%.2f", failedIn)) s; cut off since \(cutOff.map { String(format: "%.2f", $0.timeIntervalSince(stopped)) } ?? "-") s after the stop")
        }
    }
}

/// The fields of `host/NAME` a test checks.
private struct RecordView: Decodable {
    var name: String
    var group: String
}
