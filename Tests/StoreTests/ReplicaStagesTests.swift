import BulkheadCore
import Foundation
import Store
import Testing

/// What the host's stage runner keeps in its replica from the feed: running rollouts,
/// each pool's active versions and the contents of the versions they name.
@Suite struct ReplicaStagesTests {
    @Test func rolloutsActiveVersionsAndArtifactsReachTheReplicaThroughTheFeed() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        let replica = try HostReplica(path: directory.path + "/host.sqlite")
        let reader = try ChangeFeedReader(path: store.path)
        defer { reader.close() }
        try replica.apply(try reader.update(after: nil).update)
        var revision = try #require(try replica.appliedRevision())

        // A rollout of rules 1 starts, with its machine (any bytes to the store).
        _ = try store.putArtifact(kind: .rules, content: #"{"rules":[],"rulesets":{}}"#, actor: "test")
        let record = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running stage 0",
                                             state: Data("machine v1".utf8), actor: "test")
        let started = try reader.update(after: revision)
        #expect(started.update.rollouts == [ReplicaRollout(id: record.id, kind: .rules, state: Data("machine v1".utf8))])
        #expect(started.update.artifacts.map(\.version) == [1], "the new version's content, not the built-in 0")
        try replica.apply(started.update)
        revision = started.update.revision
        #expect(try replica.contents().rollouts.map(\.id) == [record.id])
        #expect(try replica.artifactContent(kind: .rules, version: 1) == #"{"rules":[],"rulesets":{}}"#)

        // It completes: the pool's active version, then the record finished.
        try store.setActiveVersion(1, of: .rules, inPool: "free", actor: "rollout")
        _ = try store.updateRollout(id: record.id, status: "completed", state: Data("machine done".utf8), finished: true, actor: "test")
        let completed = try reader.update(after: revision)
        #expect(completed.update.endedRollouts == [record.id])
        #expect(completed.update.activeVersions == [ReplicaActiveVersion(kind: .rules, pool: "free", version: 1)])
        try replica.apply(completed.update)
        var contents = try replica.contents()
        #expect(contents.rollouts.isEmpty)
        #expect(contents.activeVersions == [ReplicaActiveVersion(kind: .rules, pool: "free", version: 1)])

        // A full copy (a new replica) holds the same.
        let fresh = try HostReplica(path: directory.path + "/fresh.sqlite")
        try fresh.apply(try reader.update(after: nil).update)
        contents = try fresh.contents()
        #expect(contents.activeVersions == [ReplicaActiveVersion(kind: .rules, pool: "free", version: 1)])
        #expect(try fresh.artifactContent(kind: .rules, version: 1) != nil)
        #expect(try fresh.artifactContent(kind: .rules, version: 2) == nil)
    }
}
