#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Testing

/// A cohort's policy rolled out on one host: through the gate like any platform change,
/// to its own cohort's pools alone, taking effect in the workers without a restart.
@Suite(.serialized) struct PolicyRolloutTests {
    /// About 3 million instructions: inside the harness's 5 million, over 2 million.
    static let heavy = #"function handle(req) local n = 0 for i = 1, 1500000 do n = n + i end return "heavy" end"#
    /// About 4,000 instructions: inside any limit but 1,000.
    static let work = #"function handle(req) local n = 0 for i = 1, 2000 do n = n + i end return "work" end"#

    /// Free's cohort file as the harness wrote it, with `instructions` replaced.
    func policy(_ host: HostHarness, instructions: Int) throws -> String {
        let text = try String(contentsOfFile: host.cohorts + "/free.toml", encoding: .utf8)
        let path = host.root + "/policy-\(instructions).toml"
        try text.replacingOccurrences(of: "instructions = 5000000", with: "instructions = \(instructions)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func start(_ host: HostHarness, _ file: String) throws -> Int {
        let result = try host.cli(["rollout", "start", "--kind", "policy", file])
        guard result.status == 0, let id = Int(result.output.split(separator: "\n").last ?? "") else {
            throw HarnessError("rollout start failed: \(result.output)")
        }
        return id
    }

    /// The rollout's status once it has ended.
    func ended(_ host: HostHarness, _ id: Int) throws -> [String: Any] {
        var last: [String: Any] = [:]
        let done = waitFor(timeout: 60, interval: 0.1) {
            guard let result = try? host.cli(["rollout", "status", String(id), "--json"]),
                  let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            else { return false }
            last = object
            let state = (object["state"] as? [String: Any])?.keys.first ?? ""
            return ["completed", "rolledBack", "aborted"].contains(state)
        }
        guard done != nil else { throw HarnessError("rollout \(id) did not end: \(last)") }
        return last
    }

    func policies(_ host: HostHarness) throws -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        for pool in try host.status().pools { result[pool.name] = pool.workers.map(\.stats.versions.policy) }
        return result
    }

    @Test func aSmallerLimitGoesThroughTheGateAndOneThatFailsScriptsIsRolledBackAtTheCanary() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.writeScript(customer: "c-free", name: "heavy", source: Self.heavy)
        try host.writeScript(customer: "c-free", name: "work", source: Self.work)
        try host.start()
        let free = try host.pool("free").port
        let served = waitFor(timeout: 30, interval: 0.1) {
            httpGet(port: free, host: "heavy.c-free.localhost", timeout: 10)?.body == "heavy"
                && httpGet(port: free, host: "work.c-free.localhost")?.body == "work"
        }
        #expect(served != nil, "heavy and work answer under free's cohort file")
        let run = try host.steadyLoad(seconds: 120)
        defer { _ = run.stop() }

        // 2 million instructions: free's stages only, then every free worker runs it.
        let smaller = try start(host, try policy(host, instructions: 2_000_000))
        let first = try ended(host, smaller)
        let stages = (first["stages"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        print("policy with 2,000,000 instructions: \(first["state"] ?? "?") over \(stages)")
        #expect((first["state"] as? [String: Any])?.keys.first == "completed")
        #expect(stages == ["free canary", "free"], "the plan covers free's pool alone")
        let target = first["targetVersion"] as? Int ?? -1
        let running = try policies(host)
        #expect(running["free"] == [target, target], "\(running)")
        #expect(running["pro"] == [0, 0] && running["enterprise"] == [0, 0], "\(running)")
        let heavy = httpGet(port: free, host: "heavy.c-free.localhost", timeout: 10)
        print("heavy under the policy: \(heavy?.status ?? 0) \(heavy?.body.prefix(120) ?? "")")
        #expect(heavy?.body.contains("limit-cpu") == true, "a script needing 3 million instructions fails under 2 million")

        // 1,000 instructions fail free's work script: rolled back at the canary.
        var target2 = try host.target("work", pool: "free", customer: "c-free", script: "work", expectBody: nil)
        target2.expectedPool = "free"
        let work = try LoadRun.start(LoadConfiguration(
            targets: [target2], connectionsPerTarget: 4, stop: .duration(.seconds(60)), ratePerConnection: 20))
        defer { _ = work.stop() }
        usleep(500_000)
        let failing = try start(host, try policy(host, instructions: 1_000))
        var sawIt: [String] = []
        var final: [String: Any] = [:]
        _ = waitFor(timeout: 60, interval: 0.05) {
            for (pool, versions) in (try? policies(host)) ?? [:] {
                for (slot, version) in versions.enumerated() where version == target + 1 && (pool, slot) != ("free", 0) {
                    sawIt.append("\(pool) slot \(slot)")
                }
            }
            guard let result = try? host.cli(["rollout", "status", String(failing), "--json"]),
                  let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            else { return false }
            final = object
            return ["completed", "rolledBack", "aborted"].contains((object["state"] as? [String: Any])?.keys.first ?? "")
        }
        _ = work.stop()
        let failed = (final["decisions"] as? [[String: Any]] ?? []).first { $0["event"] as? String == "failed" }
        print("policy with 1,000 instructions: \(final["state"] ?? "?"); \(failed?["message"] ?? "no failed decision")")
        #expect((final["state"] as? [String: Any])?.keys.first == "rolledBack")
        #expect(failed?["stageName"] as? String == "free canary")
        #expect(sawIt.isEmpty, "only free's canary slot ever ran it: \(Set(sawIt))")
        let back = waitFor(timeout: 10, interval: 0.1) { (try? policies(host))?["free"] == [target, target] }
        #expect(back != nil, "free is back on the 2,000,000-instruction policy")
        let report = run.stop()
        print(report.summary)
        #expect(report.failed == 0, "the echo load (a few instructions) never failed")
    }
}
