import BulkheadCore
import Foundation
import GRDB
import Store
import Testing

/// What the host's replica keeps of script deployments: each script's split, for a
/// start without the control store, and the host's reports on the deployments it
/// serves, for the control plane's driver.
@Suite struct ReplicaDeploymentsTests {
    private static func script(_ name: String, version: Int, source: String, split: ScriptSplit?) -> ActiveScript {
        ActiveScript(
            spec: ScriptSpec(customer: "acme", name: name, version: version, source: source, split: split), cohort: "free",
            sha256: SHA256Hasher.hex(source), quarantined: false)
    }

    @Test func aSplitSurvivesReopeningTheReplicaAndGoesWhenTheFeedDropsIt() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/host.sqlite"
        let split = ScriptSplit(deployment: 4, version: 3, source: "return 'c\u{0}d'", percent: 12.5, keyHeader: "x-user")
        var update = ReplicaUpdate(revision: 7, isFullCopy: true)
        update.customers = ["acme": "free"]
        update.scripts = [
            Self.script("hello", version: 2, source: "return 2", split: split),
            Self.script("plain", version: 1, source: "return 1", split: nil),
        ]
        var replica = try HostReplica(path: path)
        try replica.apply(update)
        try replica.close()

        // A host started again while its control store is unreadable serves the same split.
        replica = try HostReplica(path: path)
        var contents = try replica.contents()
        #expect(contents.revision == 7)
        #expect(contents.scripts.map(\.split) == [split, nil])
        #expect(contents.scripts.first?.split?.source == "return 'c\u{0}d'")

        // A step changes the share; the deployment's end takes the split away.
        var step = ReplicaUpdate(revision: 8, isFullCopy: false)
        var grown = split
        grown.percent = 50
        step.scripts = [Self.script("hello", version: 2, source: "return 2", split: grown)]
        try replica.apply(step)
        #expect(try replica.contents().scripts.map(\.split?.percent) == [50, nil])
        var ended = ReplicaUpdate(revision: 9, isFullCopy: false)
        ended.scripts = [Self.script("hello", version: 3, source: "return 'c\u{0}d'", split: nil)]
        try replica.apply(ended)
        contents = try replica.contents()
        #expect(contents.scripts.map(\.split) == [nil, nil])
        #expect(contents.scripts.map(\.version) == [3, 1])
    }

    @Test func deploymentReportsAreSavedReplacedRemovedAndReadByTheControlPlane() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/host.sqlite"
        let replica = try HostReplica(path: path)
        let reader = try HostReplicaReader(path: path)
        #expect(try reader.deploymentReports().isEmpty)
        try replica.saveDeploymentReport(deployment: 3, report: Data("first".utf8))
        try replica.saveDeploymentReport(deployment: 5, report: Data("other".utf8))
        try replica.saveDeploymentReport(deployment: 3, report: Data("second".utf8))
        let both = [3: Data("second".utf8), 5: Data("other".utf8)]
        #expect(try replica.deploymentReports() == both)
        #expect(try reader.deploymentReports() == both)
        try replica.removeDeploymentReport(deployment: 3)
        try replica.removeDeploymentReport(deployment: 42)
        #expect(try reader.deploymentReports() == [5: Data("other".utf8)])
        // Apart from the rollouts' stage reports, and not audited (the host writes them on every look).
        #expect(try replica.stageReports().isEmpty)
        #expect(try replica.auditEvents(after: 0, limit: 10).isEmpty)
    }

    @Test func aReplicaFromBeforeDeploymentsIsMigratedAndKeepsItsScripts() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/host.sqlite"
        var update = ReplicaUpdate(revision: 7, isFullCopy: true)
        update.customers = ["acme": "free"]
        update.scripts = [Self.script("hello", version: 2, source: "return 2", split: nil)]
        let replica = try HostReplica(path: path)
        try replica.apply(update)
        try replica.close()
        // Back to the schema of a build before deployments.
        let raw = try DatabaseQueue(path: path)
        try raw.write { db in
            try db.execute(sql: """
                ALTER TABLE scripts DROP COLUMN split;
                DROP TABLE deployment_reports;
                DELETE FROM grdb_migrations WHERE identifier = 'v5-script-splits';
                """)
        }
        try raw.close()

        // The control plane reads a host that was not upgraded yet: no reports, no error.
        let reader = try HostReplicaReader(path: path)
        #expect(try reader.deploymentReports().isEmpty)

        let upgraded = try HostReplica(path: path)
        let contents = try upgraded.contents()
        #expect(contents.revision == 7, "the feed goes on from where it was")
        #expect(contents.scripts == [ScriptSpec(customer: "acme", name: "hello", version: 2, source: "return 2")])
        try upgraded.saveDeploymentReport(deployment: 1, report: Data("r".utf8))
        #expect(try reader.deploymentReports() == [1: Data("r".utf8)])
    }
}
