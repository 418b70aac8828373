#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// The host's local guard, end to end: a bad runtime on the free canary is put back
/// by the host itself, while free's gate is set so that it could not have passed
/// or paused yet, and the rollout then ends rolled back with a decision naming
/// the guard. Real pools under load, the real CLI.
@Suite(.serialized) struct LocalGuardIntegrationTests {
    /// free with a gate that needs 5 minutes and 100,000 requests: only an at-once
    /// check could decide within the test.
    static let slowFree = """
        name = "free"
        order = 1
        port = 0
        workers = 2
        canary_workers = 1

        [limits]
        instructions = 5_000_000
        memory_mb = 16
        wall_ms = 400
        max_body_kb = 64

        [gate]
        bake_seconds = 300
        max_bake_seconds = 600
        min_requests = 100_000

        [restart]
        max_restarts = 5
        window_seconds = 10
        """

    func rolloutStatus(_ host: HostHarness, _ id: String) -> [String: Any]? {
        guard let result = try? host.cli(["rollout", "status", id, "--json"]), result.status == 0 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any]
    }

    func stateName(_ status: [String: Any]?) -> String {
        (status?["state"] as? [String: Any])?.keys.first ?? ""
    }

    /// A runtime whose every request the watchdog must end: the canary slot crash-
    /// loops (the runtime's chunk is named, no customer script is blamed). free's
    /// gate allows one crash, so the guard (two crashes of one slot) is the first
    /// to see a loop; the rollout's own bake could not have ended.
    @Test func aRuntimeThatCrashLoopsTheCanaryIsPutBackByTheHostsGuard() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.writeRawCohort("free", Self.slowFree.replacingOccurrences(of: "min_requests = 100_000", with: "min_requests = 100_000\nmax_crashes = 1"))
        try host.start()
        let run = try host.steadyLoad(pools: ["pro", "enterprise"], seconds: 60)
        defer { _ = run.stop() }
        let runtime = host.root + "/looping-runtime.lua"
        try """
            function on_request(req, rules)
              string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')
              return nil
            end
            """.write(toFile: runtime, atomically: true, encoding: .utf8)
        let port = try host.pool("free").port
        let id = try #require(try host.cli(["rollout", "start", "--kind", "runtime", runtime]).output.split(separator: "\n").last.map(String.init))
        var status: [String: Any]?
        let ended = waitFor(timeout: 40, interval: 0.1) {
            // Requests keep the canary busy; each one it takes ends it.
            _ = httpGet(port: port, host: "echo.c-free.localhost", timeout: 3)
            status = rolloutStatus(host, id)
            return stateName(status) == "rolledBack"
        }
        let decisions = (status?["decisions"] as? [[String: Any]]) ?? []
        for decision in decisions { print("decision: \(decision["by"] ?? "") \(decision["event"] ?? ""): \(decision["message"] ?? "")") }
        #expect(ended != nil, "the rollout ends rolled back")
        let failed = decisions.first { $0["event"] as? String == "failed" }
        #expect(failed?["by"] as? String == "local guard", "\(decisions)")
        #expect((failed?["message"] as? String)?.contains("crash-looped: 2 crash(es)") == true)
        if let startedAt = decisions.first?["time"] as? Double, let failedAt = failed?["time"] as? Double {
            print(String(format: "local guard: crash-looping canary put back %.1f s after the rollout started", failedAt - startedAt))
            #expect(failedAt - startedAt < 20, "two watchdog ends take about 2 s")
        }
        #expect(waitFor(timeout: 10, interval: 0.05) {
            (try? host.pool("free").workers.count { $0.ready && $0.stats.versions.runtime == 0 }) == 2
        } != nil, "free serves on the last completed runtime")
        #expect(try host.pool("free").quarantined.isEmpty, "no customer script is blamed for the runtime's loop")
        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
    }

    @Test func aRuntimeWithANewPlatformErrorIsPutBackByTheHostsGuard() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.writeRawCohort("free", Self.slowFree)
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }
        let runtime = host.root + "/bad-runtime.lua"
        try """
            function on_request(req, rules)
              error("guard test: a platform error no pool ever had")
            end
            """.write(toFile: runtime, atomically: true, encoding: .utf8)

        let started = Date()
        let start = try host.cli(["rollout", "start", "--kind", "runtime", runtime])
        #expect(start.status == 0, "\(start.output)")
        let id = try #require(start.output.split(separator: "\n").last.map(String.init))
        var status: [String: Any]?
        let ended = waitFor(timeout: 30, interval: 0.05) {
            status = rolloutStatus(host, id)
            return stateName(status) == "rolledBack"
        }
        let seenAfter = Date().timeIntervalSince(started)
        let decisions = (status?["decisions"] as? [[String: Any]]) ?? []
        for decision in decisions { print("decision: \(decision["by"] ?? "") \(decision["event"] ?? ""): \(decision["message"] ?? "")") }
        #expect(ended != nil, "the rollout ends rolled back")
        let startedAt = decisions.first { $0["event"] as? String == "started" }?["time"] as? Double
        let failed = decisions.first { $0["event"] as? String == "failed" }
        #expect(failed?["by"] as? String == "local guard", "the host's guard decided, not the gate: \(decisions)")
        #expect((failed?["message"] as? String)?.contains("platform error signature(s) its pool never had") == true)
        #expect((failed?["message"] as? String)?.contains("guard test: a platform error no pool ever had") == true)
        #expect(failed?["stageName"] as? String == "free canary")
        #expect(!decisions.contains { $0["event"] as? String == "passed" || $0["event"] as? String == "inconclusive" },
                "the slow gate decided nothing")
        if let startedAt, let failedAt = failed?["time"] as? Double {
            print(String(format: "local guard: rollout started → rolled back in %.0f ms (seen by the CLI after %.1f s)",
                         (failedAt - startedAt) * 1000, seenAfter))
            #expect(failedAt - startedAt < 10, "put back within a few seconds")
        }
        #expect(host.supervisorOutput().contains("local guard: putting the new version's slots back"), "the log says why")

        // Every free worker runs the previous runtime again, and keeps it.
        let back = waitFor(timeout: 5, interval: 0.05) {
            (try? host.pool("free").workers.allSatisfy { $0.stats.versions.runtime == 0 }) == true
        }
        #expect(back != nil, "the canary is back on the last completed version")
        usleep(1_000_000)
        #expect(try host.status().pools.allSatisfy { $0.workers.allSatisfy { $0.stats.versions.runtime == 0 } },
                "nothing put the new version back")
        let events = try host.cli(["events"])
        #expect(events.output.contains("local guard"), "the audit log records the guard's action")

        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
    }
}
