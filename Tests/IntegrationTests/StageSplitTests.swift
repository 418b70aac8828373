#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Rollout
import Store
import Testing

/// The rollout driver and the host's stage runner meet only in the two files: the
/// host writes its stage reports into `DATA/host.sqlite`, the driver writes its
/// decisions into `DATA/bulkhead.sqlite`. These tests read both files while a real
/// host runs a rollout under load.
@Suite(.serialized) struct StageSplitIntegrationTests {
    /// Valid rules that block nothing the load sends.
    static let rules = #"{"rules": [{"id": "no-trace", "when": {"method": "TRACE"}, "action": "block", "status": 405}], "rulesets": {}}"#

    /// What one look at both files found.
    struct Look {
        var reportStage: Int?
        var reportRequests = 0
        var storedState = ""
    }

    /// Both files, opened once the host created them: the replica read-only, the
    /// control store only read (the test never writes either).
    final class Files {
        let host: HostHarness
        var replica: HostReplicaReader?
        var store: SQLiteStore?

        init(_ host: HostHarness) { self.host = host }

        func report(_ id: Int) -> StageReport? {
            if replica == nil { replica = try? HostReplicaReader(path: host.data.replicaFile) }
            guard let data = ((try? replica?.stageReports()) ?? nil)?[id] else { return nil }
            return try? JSONDecoder().decode(StageReport.self, from: data)
        }

        func look(_ id: Int) -> Look {
            var look = Look()
            if let report = report(id) {
                look.reportStage = report.stage
                look.reportRequests = report.sample.requests
            }
            if store == nil {
                var configuration = SQLiteStoreConfiguration()
                configuration.createIfMissing = false
                store = try? SQLiteStore(path: host.data.storeFile, configuration: configuration)
            }
            if let record = (try? store?.rollout(id: id)) ?? nil { look.storedState = record.status }
            return look
        }
    }

    func startRollout(_ host: HostHarness, kind: String, content: String) throws -> Int {
        let path = host.root + "/artifact-\(UUID().uuidString.prefix(6))"
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try host.cli(["rollout", "start", "--kind", kind, path])
        guard result.status == 0, let id = Int(result.output.split(separator: "\n").last ?? "") else {
            throw HarnessError("rollout start failed: \(result.output)")
        }
        return id
    }

    @Test func stageReportsInTheReplicaAdvanceAndTheDecisionsInTheStoreFollow() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }
        let id = try startRollout(host, kind: "rules", content: Self.rules)
        let files = Files(host)
        var reportedStages: [Int] = []
        var storedStates: [String] = []
        let started = Date()
        let ended = waitFor(timeout: 45, interval: 0.05) {
            let seen = files.look(id)
            if let stage = seen.reportStage, reportedStages.last != stage { reportedStages.append(stage) }
            if !seen.storedState.isEmpty, storedStates.last != seen.storedState { storedStates.append(seen.storedState) }
            return seen.storedState == "completed"
        }
        print("stage reports in host.sqlite: \(reportedStages); rollout states in bulkhead.sqlite: \(storedStates); "
              + String(format: "completed after %.1f s", Date().timeIntervalSince(started)))
        #expect(ended != nil, "the rollout completed: \(storedStates)")
        // Four stages (free canary, free, pro, enterprise), each reported by the
        // host before the driver moved past it.
        #expect(reportedStages == [0, 1, 2, 3], "\(reportedStages)")
        #expect(storedStates.contains("running stage 3"), "\(storedStates)")
        // The host removes the report of an ended rollout.
        #expect(waitFor(timeout: 5, interval: 0.05) { files.report(id) == nil } != nil,
                "the report of the ended rollout is removed")
        #expect(try host.status().pools.allSatisfy { $0.workers.allSatisfy { $0.stats.versions.rules == 1 } })
        let report = run.stop()
        print(report.summary)
        for pool in ["free", "pro", "enterprise"] { #expect(report[pool]?.failed == 0, "\(pool)") }
    }

    @Test func aHeldDriverLeavesTheStageServingAndTheGuardActing() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        host.environment["BULKHEAD_FAULT_HOLD_ROLLOUT_DRIVER"] = "1"
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }

        // Good rules: the host ships stage 0 and measures it; the held driver never
        // judges it, so nothing moves on, well past the 1 s bake.
        let good = try startRollout(host, kind: "rules", content: Self.rules)
        let files = Files(host)
        var seen = Look()
        let measured = waitFor(timeout: 15, interval: 0.1) {
            seen = files.look(good)
            return seen.reportRequests >= 20
        }
        #expect(measured != nil, "the host reports stage 0's traffic: \(seen)")
        usleep(4_000_000)
        seen = files.look(good)
        print("held driver: stage \(seen.reportStage ?? -1) reported with \(seen.reportRequests) requests; stored: \(seen.storedState)")
        #expect(seen.storedState == "running stage 0", "the held driver decided nothing")
        #expect(seen.reportStage == 0)
        let free = try host.pool("free").workers.sorted { $0.slot < $1.slot }.map(\.stats.versions.rules)
        #expect(free == [1, 0], "the canary serves the stage's version, the rest the old one: \(free)")
        #expect(try host.pool("pro").workers.allSatisfy { $0.stats.versions.rules == 0 })

        // A runtime with a platform error nobody had, with the driver still held: the
        // host's guard puts the canary back by itself and reports the trip.
        #expect(try host.cli(["rollout", "abort", String(good)]).status == 0)
        #expect(waitFor(timeout: 10, interval: 0.05) {
            (try? host.pool("free").workers.allSatisfy { $0.stats.versions.rules == 0 }) == true
        } != nil, "the abort reached the host through the feed")
        let bad = try startRollout(host, kind: "runtime", content: """
            function on_request(req, rules)
              error("split test: a platform error no pool ever had")
            end
            """)
        var tripped = false
        let putBack = waitFor(timeout: 20, interval: 0.05) {
            if let report = files.report(bad) { tripped = report.guardTrip != nil }
            return tripped && (try? host.pool("free").workers.allSatisfy { $0.stats.versions.runtime == 0 }) == true
        }
        #expect(putBack != nil, "the guard put the canary back and reported it in host.sqlite")
        #expect(files.look(bad).storedState == "running stage 0",
                "the held driver has not rolled back: the host acted alone")
        #expect(host.supervisorOutput().contains("local guard: putting the new version's slots back"))
        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
    }

    /// free alone, two workers, one canary, with a gate that cannot pass within the
    /// test: only an operator's promote moves a stage on.
    static let slowFree = """
        name = "free"
        order = 1
        port = 0
        workers = 2
        canary_workers = 1

        [gate]
        bake_seconds = 300
        max_bake_seconds = 600
        min_requests = 100_000
        """

    @Test func aHostRestartedWithoutTheControlStoreStartsEachSlotOnItsVersion() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1)])
        defer { host.stop() }
        try host.writeRawCohort("free", Self.slowFree)
        try host.start()
        // Rules 1 completed by hand (promoted through both stages): free's active version.
        let rules = try startRollout(host, kind: "rules", content: Self.rules)
        for _ in 0..<2 {
            let promote = try host.cli(["rollout", "promote", String(rules)])
            #expect(promote.status == 0, "\(promote.output)")
        }
        let files = Files(host)
        #expect(waitFor(timeout: 10, interval: 0.05) { files.look(rules).storedState == "completed" } != nil)
        // Runtime 1 on the canary only: its rollout runs, at stage 0.
        let runtime = try startRollout(host, kind: "runtime", content: DefaultRuntime.source + "\n-- runtime 1\n")
        let expected = [ArtifactVersions(runtime: 1, rules: 1, binary: 0), ArtifactVersions(runtime: 0, rules: 1, binary: 0)]
        func versions() -> [ArtifactVersions] {
            ((try? host.pool("free").workers) ?? []).sorted { $0.slot < $1.slot }.map(\.stats.versions)
        }
        #expect(waitFor(timeout: 10, interval: 0.05) { versions() == expected } != nil, "before the restart: \(versions())")
        #expect(files.look(runtime).storedState == "running stage 0")

        // Stopped whole, and restarted with the control store replaced by a note.
        host.signalSupervisor(SIGTERM)
        #expect(waitFor(timeout: 10) { host.workerPIDsFromFiles().allSatisfy { kill($0, 0) != 0 } } != nil)
        let storeFile = host.data.storeFile
        for suffix in ["", "-wal", "-shm"] { _ = rename(storeFile + suffix, host.root + "/saved.sqlite" + suffix) }
        #expect(FileManager.default.createFile(
            atPath: storeFile, contents: Data("not a database\n".utf8), attributes: [.posixPermissions: 0o600]))
        try host.start()
        #expect(try host.status().feed?.problem != nil, "the control store cannot be read")
        let restarted = waitFor(timeout: 10, interval: 0.05) { versions() == expected }
        print("restarted without the control store: free runs \(versions())")
        #expect(restarted != nil, "each slot starts on its version from the replica: \(versions())")
    }
}
