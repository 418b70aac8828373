#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Testing

/// Operating the host: break glass without a supervisor, scaling and draining live.
@Suite(.serialized) struct OperationsTests {
    @Test func breakGlassWorksWithTheSupervisorDown() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rolloutTests = RolloutIntegrationTests()
        let run = try host.steadyLoad()
        defer { _ = run.stop() }
        for version in 1...2 {
            let file = try rolloutTests.writeFile(host, "rules\(version).json", RolloutIntegrationTests.rules(killswitch: false)
                .replacingOccurrences(of: "no-trace", with: "no-trace-\(version)"))
            let id = try rolloutTests.startRollout(host, kind: "rules", file: file)
            #expect(try rolloutTests.waitForEnd(host, id) == "completed")
        }
        #expect(try rolloutTests.versions(host).values.allSatisfy { $0.allSatisfy { $0.rules == 2 } })

        host.signalSupervisor(SIGKILL)
        let freeze = try host.cli(["break-glass", "freeze"])
        print(freeze.output)
        #expect(freeze.status == 0)
        #expect(freeze.output.contains("frozen: yes"))
        let rollback = try host.cli(["break-glass", "rollback", "--kind", "rules", "--to", "1", "--yes"])
        print(rollback.output)
        #expect(rollback.status == 0)
        #expect(rollback.output.contains("rules v1"))

        try host.start()
        let pinned = waitFor(timeout: 10, interval: 0.05) {
            (try? rolloutTests.versions(host).values.allSatisfy { $0.allSatisfy { $0.rules == 1 } }) == true
        }
        #expect(pinned != nil, "every pool runs rules v1 after the restart")
        let status = try host.cli(["break-glass", "status"])
        #expect(status.output.contains("frozen: yes"))
        // Frozen: a new rollout does not start.
        let refused = try host.cli(["rollout", "start", "--kind", "rules", try rolloutTests.writeFile(host, "r3.json", RolloutIntegrationTests.rules(killswitch: false))])
        #expect(refused.status != 0)
        #expect(refused.output.contains("frozen"))
        let events = try host.cli(["events", "--json", "--last", "10000"])
        let lines = events.output.split(separator: "\n")
        #expect(lines.contains { $0.contains("break-glass:") && $0.contains("frozen") })
        #expect(lines.contains { $0.contains("break-glass.rollback") })
        let report = run.stop()
        print(report.summary)
    }

    @Test func scaleAndDrainUnderLoad() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(connections: 4)
        defer { _ = run.stop() }
        usleep(300_000)
        #expect(try host.cli(["cohort", "scale", "pro", "--workers", "4"]).status == 0)
        let grown = waitFor(timeout: 10, interval: 0.05) { (try? host.pool("pro").workers.filter(\.ready).count) == 4 }
        #expect(grown != nil)
        #expect(try host.cli(["cohort", "scale", "pro", "--workers", "1"]).status == 0)
        let shrunk = waitFor(timeout: 10, interval: 0.05) { (try? host.pool("pro").workers.count) == 1 }
        #expect(shrunk != nil)
        #expect(try host.cli(["cohort", "drain", "enterprise"]).status == 0)
        let drained = waitFor(timeout: 10, interval: 0.05) { (try? host.pool("enterprise").workers.count) == 0 }
        #expect(drained != nil)
        usleep(500_000)
        let report = run.stop()
        print(report.summary)
        #expect(report["free"]?.failed == 0, "other pools are untouched")
        // Draining closes idle keep-alive connections between requests; no response
        // is cut off half-way (that would be a bad-response or an eof mid-body).
        #expect(report["pro"]?.failures.badResponse == 0)
        #expect(report["enterprise"]?.failures.badResponse == 0)
        let listing = try host.cli(["cohort", "list"])
        print(listing.output)
        #expect(listing.output.contains("pro"))

        // What an operator reads: aligned tables within 80 columns, no colour codes
        // when stdout is not a terminal, and the timeline of what was done.
        for command in [["status"], ["cohort", "list"], ["cohort", "show", "pro"], ["customer", "list"], ["script", "list"],
                        ["rollout", "list"], ["break-glass", "status"], ["events"]] {
            let result = try host.cli(command)
            #expect(result.status == 0, "\(command): \(result.output)")
            for line in result.output.split(separator: "\n") {
                #expect(line.count <= 80, "\(command) line over 80 columns: \(line)")
                #expect(!line.contains("\u{1B}"), "\(command) printed an escape code")
            }
        }
        let status = try host.cli(["status"])
        print(status.output)
        #expect(status.output.contains("enterprise") && status.output.contains("0/0"))
        let events = try host.cli(["events", "--json"])
        let decoded = events.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!decoded.isEmpty && decoded.count == events.output.split(separator: "\n").count, "one JSON object per line")
        #expect(decoded.contains { ($0["subject"] as? String)?.contains("workers") == true }, "the scale is in the timeline")
    }
}

/// The ingress in front of the pools.
@Suite(.serialized) struct IngressTests {
    func ingressPort(_ host: HostHarness) throws -> Int {
        guard let address = try host.status().ingress, let port = Int(address.split(separator: ":").last ?? "") else {
            throw HarnessError("no ingress in status")
        }
        return port
    }

    @Test func cohortMoveUnderTrafficThroughTheIngress() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let port = try ingressPort(host)
        let routed = waitFor(timeout: 10, interval: 0.05) {
            httpGet(port: port, host: "echo.c-free.localhost")?.headers["x-bulkhead-pool"] == "free"
        }
        #expect(routed != nil, "the ingress routes to the customer's pool")
        var target = LoadTarget(label: "moving", port: port, hostHeader: "echo.c-free.localhost", path: "/x")
        target.expectedBodySubstring = "echo"
        let run = try LoadRun.start(LoadConfiguration(
            targets: [target], connectionsPerTarget: 4, stop: .duration(.seconds(60)), ratePerConnection: 60))
        defer { _ = run.stop() }
        usleep(500_000)
        let move = try host.cli(["cohort", "move", "c-free", "--to", "pro"])
        print(move.output)
        #expect(move.status == 0)
        usleep(700_000)
        let report = run.stop()
        print(report.summary)
        #expect(report["moving"]?.failed == 0, "no failed request through the ingress: \(report["moving"]?.failureDetails ?? [:])")
        #expect((report["moving"]?.pools["pro"] ?? 0) > 0, "answers came from pro after the move")
        let after = httpGet(port: port, host: "echo.c-free.localhost")
        #expect(after?.headers["x-bulkhead-pool"] == "pro")
        let direct = httpGet(port: try host.pool("free").port, host: "echo.c-free.localhost")
        #expect(direct?.status == 421, "direct requests to the old pool get wrong-pool")
    }

    @Test func killedIngressComesBackAndPoolsAreUntouched() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(connections: 3, rate: 50)
        defer { _ = run.stop() }
        let port = try ingressPort(host)
        _ = waitFor(timeout: 10, interval: 0.05) { httpGet(port: port, host: "echo.c-pro.localhost")?.status == 200 }
        let pid = try #require(try host.status().ingressPID)
        kill(pid, SIGKILL)
        let back = waitFor(timeout: 10, interval: 0.01) {
            httpGet(port: port, host: "echo.c-pro.localhost", timeout: 1)?.status == 200
                && (try? host.status().ingressPID).flatMap { $0 } != pid
        }
        print("ingress back after \(back.map { String(format: "%.0f ms", $0 * 1000) } ?? "never") (goal ≤ 1 s)")
        #expect(back != nil)
        let report = run.stop()
        print(report.summary)
        #expect(report.failed == 0, "no pool's direct traffic failed")
    }
}
