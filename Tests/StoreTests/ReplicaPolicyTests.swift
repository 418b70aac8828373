import BulkheadCore
import Foundation
import GRDB
import Testing

@testable import Store

/// The cohort policy, the fourth artifact kind, in a host replica: a replica made
/// before it (whose tables checked for three kinds) keeps its rows and takes policies.
@Suite struct ReplicaPolicyTests {
    @Test func aReplicaFromBeforePoliciesKeepsItsRowsAndTakesAPolicyPinVersionAndRollout() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/host.sqlite"
        // A replica as the build before policies left it: migrations up to v3, with
        // a pin, an active version, a running rollout and an artifact.
        do {
            let queue = try DatabaseQueue(path: path)
            try ReplicaSchema.migrator.migrate(queue, upTo: "v3-host-artifacts")
            try queue.write { db in
                try db.execute(sql: """
                    INSERT INTO pins (kind, version, actor, at) VALUES ('rules', 2, 'break-glass:test', '2026-12-07 10:00:00.000');
                    INSERT INTO active_artifacts (kind, pool, version) VALUES ('runtime', 'free', 3);
                    INSERT INTO running_rollouts (kind, rollout, state) VALUES ('binary', 9, x'00');
                    INSERT INTO artifacts (kind, version, content) VALUES ('runtime', 3, 'return {}');
                    """)
                #expect(throws: DatabaseError.self, "the old tables refuse a fourth kind") {
                    try db.execute(sql: "INSERT INTO pins (kind, version, actor, at) VALUES ('policy', 0, 'x', 'y')")
                }
            }
        }

        let replica = try HostReplica(path: path)
        #expect(try replica.overrides().pinnedVersion(of: .rules) == 2)
        #expect(try replica.artifactContent(kind: .runtime, version: 3) == "return {}")
        #expect(try replica.contents().activeVersions == [ReplicaActiveVersion(kind: .runtime, pool: "free", version: 3)])
        #expect(try replica.contents().rollouts.map(\.id) == [9])

        try replica.setPin(.policy, version: 0, actor: "break-glass:test")
        #expect(try replica.overrides().pinnedVersion(of: .policy) == 0)
        try replica.keepActiveVersion(1, of: .policy, pools: ["free"], actor: "break-glass:test")
        try replica.keepArtifact(ReplicaArtifact(kind: .policy, version: 1, content: "name = \"free\"\norder = 1\n"))
        #expect(try replica.artifactContent(kind: .policy, version: 1)?.contains("free") == true)
        #expect(try replica.contents().activeVersions.contains(ReplicaActiveVersion(kind: .policy, pool: "free", version: 1)))
    }
}
