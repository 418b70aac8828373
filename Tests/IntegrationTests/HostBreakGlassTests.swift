#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Rollout
import Store
import Testing

/// Break glass as the host's own override layer in its replica (`DATA/host.sqlite`),
/// end to end: set with `--data` while nothing runs, it holds after `serve` starts
/// again; an agent that holds the lock but does not answer is never written behind;
/// a freeze holds a running rollout where it is, on the driver's side and the host's.
@Suite(.serialized) struct HostBreakGlassTests {
    let glass = BreakGlassIntegrationTests()
    let rollouts = RolloutIntegrationTests()

    /// The port `status --json` says the host's own metrics listen on.
    func metricsPort(_ host: HostHarness) throws -> Int {
        let address = try #require(try host.status().metrics, "status --json shows where the host's metrics listen")
        return try #require(Int(address.split(separator: ":").last ?? ""), "\(address)")
    }

    /// The host's replica, read the way the control side reads it (read-only).
    func overrides(_ host: HostHarness) throws -> HostOverrides {
        try HostReplicaReader(path: host.data.replicaFile).overrides()
    }

    /// Stops `serve` with SIGTERM and waits for it (its workers drain): nothing runs.
    func stopServe(_ host: HostHarness) {
        host.signalSupervisor(SIGTERM)
        _ = waitFor(timeout: 10, interval: 0.05) { host.workerPIDsFromFiles().allSatisfy { kill($0, 0) != 0 } }
    }

    @Test func aFreezeAndAPinSetOfflineHoldAfterServeStartsAndUnpinOverAdminSockReleasesIt() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        // Rules v1 completes on every pool (the gate needs traffic).
        let run = try host.steadyLoad(seconds: 60)
        let id = try rollouts.startRollout(host, kind: "rules", file: try rollouts.writeFile(host, "r1.json", RolloutIntegrationTests.rules(killswitch: false)))
        #expect(try rollouts.waitForEnd(host, id) == "completed")
        print(run.stop().summary)
        #expect(try rollouts.versions(host).values.allSatisfy { $0.allSatisfy { $0.rules == 1 } })
        stopServe(host)

        // Nothing runs: both go into the replica file, under the agent's lock.
        let freeze = try host.cli(["break-glass", "freeze"])
        print("offline freeze: exit \(freeze.status): \(freeze.output)")
        #expect(freeze.status == 0)
        #expect(freeze.output.contains("frozen: yes"))
        #expect(freeze.output.contains(host.data.replicaFile), "it says where it wrote")
        let pin = try host.cli(["break-glass", "rollback", "--kind", "rules", "--to", "0", "--yes"])
        print("offline rollback: exit \(pin.status): \(pin.output)")
        #expect(pin.status == 0)
        #expect(pin.output.contains("pin the rules to v0"))
        let offline = try overrides(host)
        #expect(offline.isFrozen && offline.pinnedVersion(of: .rules) == 0, "in the replica: \(offline)")

        // serve starts again: every slot runs the pin, and every status shows both.
        try host.start()
        let pinned = waitFor(timeout: 10, interval: 0.05) {
            (try? rollouts.versions(host).values.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.rules == 0 } }) == true
        }
        #expect(pinned != nil, "every worker runs rules v0 after the start: \((try? rollouts.versions(host)) ?? [:])")
        let json = try glass.statusJSON(host)
        #expect(json["frozen"] as? Bool == true)
        #expect(json["pins"] as? [String: Int] == ["rules": 0])
        let text = try host.cli(["status"]).output
        #expect(text.contains("rollouts frozen") && text.contains("rules pinned to v0"), "status text: \(text)")
        let apiMetrics = try host.api("GET", "/metrics", token: nil).body
        let hostMetrics = try #require(httpRequest(port: try metricsPort(host), path: "/metrics")).body
        for (name, metrics) in [("API", apiMetrics), ("host", hostMetrics)] {
            #expect(glass.metric(metrics, "bulkhead_frozen") == 1, "\(name) /metrics")
            #expect(glass.metric(metrics, "bulkhead_pinned_version{kind=\"rules\"}") == 0, "\(name) /metrics")
        }
        #expect(try host.api("GET", "/", token: nil).body.contains("data-pinned-rules=\"0\""))
        // Frozen: a new rollout does not start, and stores nothing.
        let refused = try host.cli(["rollout", "start", "--kind", "runtime", try rollouts.writeFile(host, "rt.lua", DefaultRuntime.source)])
        #expect(refused.status != 0 && refused.output.contains("frozen"), "\(refused.output)")

        // Unpin over admin.sock: the pin goes, what runs stays.
        let unpin = try host.cli(["break-glass", "unpin", "--kind", "rules"])
        print("unpin: exit \(unpin.status): \(unpin.output)")
        #expect(unpin.status == 0)
        #expect(!unpin.output.contains("no host agent running"), "it went over admin.sock")
        #expect(try glass.statusJSON(host)["pins"] as? [String: Int] == [:])
        #expect(try overrides(host).pins.isEmpty)
        usleep(500_000)
        #expect(try rollouts.versions(host).values.allSatisfy { $0.allSatisfy { $0.rules == 0 } }, "unpin ships nothing")
        #expect(try host.cli(["break-glass", "unfreeze"]).status == 0)
        #expect(try glass.statusJSON(host)["frozen"] as? Bool == false)
        let events = try host.cli(["events", "--json", "--last", "10000"]).output
        #expect(events.contains("break-glass.rollback") && events.contains("break-glass.unpin"), "audited in the host's log")
    }

    @Test func anOfflineWriteIsRefusedWhileAServeHoldsTheLockWithoutAnswering() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let pid = try host.status().supervisorPID
        // A stopped serve: it holds the lock and admin.sock accepts but never answers.
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let started = Date()
        let freeze = try host.cli(["break-glass", "freeze"])
        let seconds = Date().timeIntervalSince(started)
        print("freeze against a stopped serve: exit \(freeze.status) after \(String(format: "%.1f", seconds)) s: \(freeze.output)")
        #expect(freeze.status == 1)
        #expect(freeze.output.contains("does not answer") && freeze.output.contains("pid \(pid)"), "\(freeze.output)")
        #expect(freeze.output.contains("nothing was changed"))
        // A read still answers, from the replica.
        let status = try host.cli(["break-glass", "status"])
        print("break-glass status meanwhile: exit \(status.status): \(status.output)")
        #expect(status.status == 0 && status.output.contains("frozen: no"))
        kill(pid, SIGCONT)
        // Resumed, the agent reads what is queued on its socket: nothing it may apply.
        #expect(try glass.statusJSON(host)["frozen"] as? Bool == false)
        usleep(500_000)
        #expect(try overrides(host).isFrozen == false, "nothing was written behind the agent, nor queued for it")
    }

    @Test func aFreezeWhileARolloutRunsStopsItFromAdvancingAndTheHostFromWideningIt() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }
        let id = try rollouts.startRollout(host, kind: "rules", file: try rollouts.writeFile(host, "r1.json", RolloutIntegrationTests.rules(killswitch: false)))
        // The canary slot runs v1 first; freeze as soon as it does.
        let canary = waitFor(timeout: 10, interval: 0.02) {
            (try? rollouts.versions(host).values.joined().contains { $0.rules == 1 }) == true
        }
        #expect(canary != nil, "the canary got rules v1")
        #expect(try host.cli(["break-glass", "freeze"]).status == 0)
        let slotsAtFreeze = try rollouts.versions(host).values.joined().filter { $0.rules == 1 }.count
        let stateAtFreeze = try rollouts.rolloutState(host, id)
        // Bake is 1 s a stage: unfrozen, three stages pass in about 3 s. Frozen, 5 s change nothing.
        var most = slotsAtFreeze
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            most = max(most, try rollouts.versions(host).values.joined().filter { $0.rules == 1 }.count)
            usleep(100_000)
        }
        let stateAfter = try rollouts.rolloutState(host, id)
        print("frozen: \(slotsAtFreeze) slot(s) on v1 at the freeze, at most \(most) in 5 s; stage \(stateAtFreeze["currentStage"] ?? "-") → \(stateAfter["currentStage"] ?? "-")")
        #expect(most == slotsAtFreeze, "the host put v1 on no more slots while frozen")
        #expect((stateAfter["state"] as? [String: Any])?.keys.first != "completed")
        #expect("\(stateAfter["currentStage"] ?? "-")" == "\(stateAtFreeze["currentStage"] ?? "-")", "the driver did not advance the stage")
        #expect(stateAfter["frozen"] as? Bool == true, "the rollout shows the host's freeze")
        // Unfrozen, it goes on to the end.
        #expect(try host.cli(["break-glass", "unfreeze"]).status == 0)
        #expect(try rollouts.waitForEnd(host, id) == "completed")
        let report = run.stop()
        print(report.summary)
    }

    /// The host's own half of the freeze: a stage that widens the new version and
    /// reaches it through the feed (written here as a driver that never saw the freeze
    /// would write it; the real driver is held) is not put on the slots while frozen.
    @Test func aFrozenHostDoesNotWidenAStageTheFeedBrings() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        host.environment["BULKHEAD_FAULT_HOLD_ROLLOUT_DRIVER"] = "1"
        try host.start()
        let id = try rollouts.startRollout(host, kind: "rules", file: try rollouts.writeFile(host, "r1.json", RolloutIntegrationTests.rules(killswitch: false)))
        let canary = waitFor(timeout: 10, interval: 0.02) {
            (try? rollouts.versions(host).values.joined().filter { $0.rules == 1 }.count) == 1
        }
        #expect(canary != nil, "the canary got rules v1")
        #expect(try host.cli(["break-glass", "freeze"]).status == 0)

        // Stage 1 (the rest of free) in the control store, as a driver unaware of the freeze saves it.
        let store = try SQLiteStore(dataDirectory: host.data)
        defer { try? store.close() }
        let record = try #require(try store.rollout(id: id))
        var machine = try JSONDecoder().decode(RolloutMachine.self, from: record.state)
        _ = machine.setFrozen(false, now: Date().timeIntervalSince1970)
        _ = try machine.promote(now: Date().timeIntervalSince1970, by: "a driver that never saw the freeze")
        let widened = machine.stagesWithNewVersion.count
        #expect(widened >= 2, "stage 1 gives v1 to more slots: \(machine.stagesWithNewVersion)")
        _ = try store.updateRollout(id: id, status: "running stage 1", state: try JSONEncoder().encode(machine), finished: false, actor: "test")

        var most = 0
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            most = max(most, try rollouts.versions(host).values.joined().filter { $0.rules == 1 }.count)
            usleep(100_000)
        }
        print("frozen host: at most \(most) slot(s) on v1 in 3 s after the feed brought a stage with \(widened) stage(s) on it")
        #expect(most == 1, "the frozen host put v1 on no more slots")
        #expect(host.supervisorOutput().contains("host frozen"), "the host says why it waits")
    }
}
