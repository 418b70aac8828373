#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Supervisor
import Testing

/// The rollout gate judges a stage only on what happened in it, end to end: real
/// pools under load, real worker kills, real rollbacks.
@Suite(.serialized) struct GateIntegrationTests {
    /// The `string.find` that runs for hours in C: only the watchdog ends it.
    static let pathologicalFind = "string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')"

    // MARK: Helpers (over control.sock, in process: no CLI start-up in the timings)

    func admin(_ host: HostHarness, _ method: String, _ path: String, _ body: [String: String]? = nil) throws -> Any {
        let bytes = try body.map { Array(try JSONSerialization.data(withJSONObject: $0)) } ?? []
        let answer = try host.control(method, path, body: bytes)
        guard (200..<300).contains(answer.status) else { throw HarnessError("\(method) \(path) failed: \(answer.status) \(answer.body)") }
        return try JSONSerialization.jsonObject(with: Data(answer.body.utf8))
    }

    func startRollout(_ host: HostHarness, kind: String, content: String) throws -> Int {
        let answer = try admin(host, "POST", "/v1/admin/rollouts", ["kind": kind, "content": content]) as? [String: Any]
        guard let id = answer?["id"] as? Int else { throw HarnessError("rollout start answered \(String(describing: answer))") }
        return id
    }

    func rollout(_ host: HostHarness, _ id: Int) throws -> [String: Any] {
        guard let status = try admin(host, "GET", "/v1/admin/rollouts/\(id)") as? [String: Any] else {
            throw HarnessError("rollout status of \(id) is not an object")
        }
        return status
    }

    func stateName(_ status: [String: Any]) -> String {
        (status["state"] as? [String: Any])?.keys.first ?? ""
    }

    /// Waits until the rollout has ended; returns its status.
    func waitForEnd(_ host: HostHarness, _ id: Int, timeout: Double = 60) throws -> [String: Any] {
        var last: [String: Any] = [:]
        let ended = waitFor(timeout: timeout, interval: 0.01) {
            guard let status = try? rollout(host, id) else { return false }
            last = status
            return ["completed", "rolledBack", "aborted"].contains(stateName(status))
        }
        guard ended != nil else { throw HarnessError("rollout \(id) still \(stateName(last)) after \(timeout) s") }
        return last
    }

    func decisions(_ status: [String: Any]) -> [[String: Any]] {
        (status["decisions"] as? [[String: Any]]) ?? []
    }

    func messages(_ status: [String: Any]) -> String {
        decisions(status).compactMap { $0["message"] as? String }.joined(separator: "\n")
    }

    // MARK: Tests

    /// Finding 3: a free customer's script that the watchdog must kill gets
    /// quarantined while a good runtime bakes in free. The kills are blamed on the
    /// script, so the stage leaves them out (and says so) and the rollout completes.
    @Test func aScriptQuarantinedWhileARuntimeBakesDoesNotFailIt() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        // Free as one stage (no canary) that bakes long enough for three kills.
        try host.writeRawCohort("free", """
            name = "free"
            order = 1
            port = 0
            workers = 2
            canary_workers = 0

            [limits]
            instructions = 5_000_000
            memory_mb = 16
            wall_ms = 400
            max_body_kb = 64

            [gate]
            bake_seconds = 15
            max_bake_seconds = 60
            min_requests = 20

            [restart]
            max_restarts = 5
            window_seconds = 10
            """)
        try host.writeScript(customer: "c-free", name: "poison", source: """
            function handle(req)
              return tostring(\(Self.pathologicalFind))
            end
            """)
        try host.start()
        let run = try host.steadyLoad(seconds: 90)
        defer { _ = run.stop() }
        let port = try host.pool("free").port

        let id = try startRollout(host, kind: "runtime", content: DefaultRuntime.source)
        var kills = 0
        for attempt in 1...6 {
            let answer = httpGet(port: port, host: "poison.c-free.localhost", timeout: 10)
            print("poison request \(attempt): \(answer.map { "\($0.status) \($0.headers["x-bulkhead-error"] ?? "")" } ?? "connection dropped")")
            if answer?.status == 503 && answer?.headers["x-bulkhead-error"] == "quarantined" { break }
            kills += 1
            _ = waitFor(timeout: 10) { (try? host.pool("free").workers.filter(\.ready).count) == 2 }
        }
        #expect(kills == 3, "quarantined after three kills, got \(kills)")
        let during = try rollout(host, id)
        #expect(stateName(during) == "running", "the kills happened while free baked: \(messages(during))")

        let status = try waitForEnd(host, id)
        print(messages(status))
        #expect(stateName(status) == "completed", "one customer's quarantined script does not fail a good runtime: \(messages(status))")
        let free = decisions(status).first { ($0["event"] as? String) == "passed" && ($0["stageName"] as? String) == "free" }
        let verdict = try #require(free?["verdict"] as? [String: Any], "the free stage passed with its verdict")
        #expect(verdict["crashes"] as? Int == 0)
        #expect((verdict["crashesLeftOut"] as? [String: Int]) == ["c-free/poison": 3], "the verdict says which crashes it left out: \(verdict)")
        #expect((free?["message"] as? String)?.contains("3 crash(es) left out, already blamed on a customer script: c-free/poison ×3") == true)
        #expect(try host.pool("free").quarantined == ["c-free/poison"])
        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
    }

    /// A runtime that ends its workers under an innocent script still fails its
    /// stage: the watchdog names the runtime's chunk, not a customer's script, so
    /// no script explains the crash.
    @Test func aRuntimeThatEndsWorkersUnderAnInnocentScriptFailsItsStage() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }
        let runtime = """
            function on_request(req, rules)
              \(Self.pathologicalFind)
              return nil
            end
            """
        var othersSawIt = false
        let id = try startRollout(host, kind: "runtime", content: runtime)
        let ended = waitFor(timeout: 30, interval: 0.05) {
            if let status = try? host.status() {
                othersSawIt = othersSawIt || status.pools.contains { $0.name != "free" && $0.workers.contains { $0.stats.versions.runtime == 1 } }
            }
            return (try? stateName(rollout(host, id))) == "rolledBack"
        }
        #expect(ended != nil, "the runtime that ends workers fails the free canary")
        #expect(!othersSawIt, "pro and enterprise never run it")
        let status = try rollout(host, id)
        print(messages(status))
        let failed = decisions(status).first { ($0["event"] as? String) == "failed" }
        let verdict = try #require(failed?["verdict"] as? [String: Any])
        #expect((verdict["failedChecks"] as? [String])?.contains("crashes") == true, "\(verdict)")
        #expect(((verdict["crashesLeftOut"] as? [String: Int]) ?? [:]).isEmpty, "no script is blamed for the runtime's overrun")
        #expect((failed?["stageName"] as? String) == "free canary")
        #expect(try host.pool("free").quarantined.isEmpty, "no customer script is quarantined for the platform's fault")
        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
    }

    /// Finding 8: a good runtime rollout started right after the gate rolled back a
    /// bad one, under the load that made the bad one fail, passes: the bad
    /// runtime's errors that the canary reports in its next heartbeats stay with
    /// the bad version. Three rounds, each new rollout started as soon as the
    /// rollback is seen (within 0.2 s; the stale heartbeat lasts up to 200 ms).
    @Test func aGoodRolloutRightAfterARollbackPasses() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 120)
        defer { _ = run.stop() }
        let bad = """
            function on_request(req, rules)
              error("boom: every request")
            end
            """
        var gaps: [Double] = []
        for round in 1...3 {
            let badID = try startRollout(host, kind: "runtime", content: bad)
            let badStatus = try waitForEnd(host, badID, timeout: 30)
            let goodID = try startRollout(host, kind: "runtime", content: DefaultRuntime.source)
            #expect(stateName(badStatus) == "rolledBack", "round \(round): the bad runtime is rolled back: \(messages(badStatus))")
            let status = try waitForEnd(host, goodID)
            let failedAt = decisions(badStatus).last { ($0["event"] as? String) == "failed" }?["time"] as? Double
            let startedAt = decisions(status).first { ($0["event"] as? String) == "started" }?["time"] as? Double
            if let failedAt, let startedAt { gaps.append(startedAt - failedAt) }
            print("round \(round): bad \(badID) rolled back; good \(goodID) started \(String(format: "%.0f ms", ((startedAt ?? 0) - (failedAt ?? 0)) * 1000)) later, ended \(stateName(status))")
            print(messages(status))
            #expect(stateName(status) == "completed", "round \(round): the good runtime is not charged the bad one's errors: \(messages(status))")
            #expect(!messages(status).contains("boom"), "round \(round): no error of the rolled-back runtime reaches the new rollout's verdicts")
        }
        print("rollback → next rollout started: \(gaps.map { String(format: "%.0f ms", $0 * 1000) }.joined(separator: ", ")) (the scenario needs ≤ 200 ms)")
        #expect(gaps.count == 3)
        #expect(gaps.allSatisfy { $0 < 2 }, "the next rollout starts right after the rollback (allowed 10x the 0.2 s of the finding)")
        let report = run.stop()
        print(report.summary)
        #expect(report["pro"]?.failed == 0)
        #expect(report["enterprise"]?.failed == 0)
        #expect(try host.status().pools.allSatisfy { $0.workers.allSatisfy { $0.stats.versions.runtime == 6 } }, "every worker runs the last good runtime")
    }
}
