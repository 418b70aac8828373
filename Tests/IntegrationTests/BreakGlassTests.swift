#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store
import Testing

/// Break glass that cannot make things worse, end to end: a real host, real traffic,
/// the real CLI (with no terminal, as a script runs it), the API's page and metrics.
@Suite(.serialized) struct BreakGlassIntegrationTests {
    /// A runtime that throws on every request: the gate rejects it at the free canary.
    static let throwingRuntime = """
        function on_request(req, rules)
          error("this runtime is broken")
        end
        """

    /// The versions of `kind` in the store, read the way an operator would check (the file itself).
    func storedVersions(_ host: HostHarness, _ kind: ArtifactKind) throws -> [Int] {
        // The host has made its store: opening it creates nothing.
        guard FileManager.default.fileExists(atPath: host.data.storeFile) else { throw HarnessError("no store at \(host.data.storeFile)") }
        let store = try SQLiteStore(dataDirectory: host.data)
        defer { try? store.close() }
        return try store.artifacts(kind: kind).map(\.version)
    }

    /// `status --json` as JSON.
    func statusJSON(_ host: HostHarness) throws -> [String: Any] {
        let result = try host.cli(["status", "--json"])
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw HarnessError("status --json failed: \(result.output)")
        }
        return object
    }

    /// The value of a metric line (`name{labels} value`) in `/metrics`, or nil when absent.
    func metric(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    @Test func rollbackPinsTheCompletedVersionUntilUnpinAndRefusesRolloutsMeanwhile() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rollouts = RolloutIntegrationTests()
        let run = try host.steadyLoad(seconds: 120)
        defer { _ = run.stop() }

        // Runtime v1 is rejected at the free canary; runtime v2 completes.
        let bad = try rollouts.startRollout(host, kind: "runtime", file: try rollouts.writeFile(host, "bad.lua", Self.throwingRuntime))
        #expect(try rollouts.waitForEnd(host, bad) == "rolledBack")
        let good = try rollouts.startRollout(host, kind: "runtime", file: try rollouts.writeFile(host, "good.lua", DefaultRuntime.source))
        #expect(try rollouts.waitForEnd(host, good) == "completed")
        #expect(try storedVersions(host, .runtime) == [1, 2])

        // With no terminal and no --yes: the plan is shown, nothing is done.
        let unconfirmed = try host.cli(["break-glass", "rollback", "--kind", "runtime"])
        print(unconfirmed.output)
        #expect(unconfirmed.status != 0)
        #expect(unconfirmed.output.contains("pin the runtime to v2"), "it says what it would pin")
        #expect(unconfirmed.output.contains("--yes"))
        #expect(try statusJSON(host)["pins"] as? [String: Int] == [:], "nothing pinned without confirmation")

        // Asking for the rejected version by name is refused with the gate's reason.
        let rejected = try host.cli(["break-glass", "rollback", "--kind", "runtime", "--to", "1", "--yes"])
        print(rejected.output)
        #expect(rejected.status != 0)
        #expect(rejected.output.contains("rejected by the gate"))
        #expect(try statusJSON(host)["pins"] as? [String: Int] == [:])

        let rollback = try host.cli(["break-glass", "rollback", "--kind", "runtime", "--yes"])
        print(rollback.output)
        #expect(rollback.status == 0)
        #expect(rollback.output.contains("pin the runtime to v2"))
        #expect(rollback.output.contains("completed a rollout"), "it says why v2")
        for pool in ["free", "pro", "enterprise"] { #expect(rollback.output.contains("\(pool): runs v2")) }
        let everyWorkerOnV2 = waitFor(timeout: 10, interval: 0.05) {
            (try? rollouts.versions(host).values.allSatisfy { $0.allSatisfy { $0.runtime == 2 } }) == true
        }
        #expect(everyWorkerOnV2 != nil, "every worker runs the completed runtime v2, none the rejected v1")

        // Every place an operator looks shows the pin.
        let json = try statusJSON(host)
        #expect(json["frozen"] as? Bool == false)
        #expect(json["pins"] as? [String: Int] == ["runtime": 2])
        let text = try host.cli(["status"])
        #expect(text.output.contains("runtime pinned to v2"), "status text: \(text.output)")
        let breakGlass = try host.cli(["break-glass", "status"])
        #expect(breakGlass.output.contains("pinned: runtime v2"))
        let page = try host.api("GET", "/", token: nil)
        #expect(page.status == 200)
        #expect(page.body.contains("data-pinned-runtime=\"2\""))
        #expect(page.body.contains("runtime pinned to v2"))
        let metrics = try host.api("GET", "/metrics", token: nil).body
        #expect(metric(metrics, "bulkhead_frozen") == 0)
        #expect(metric(metrics, "bulkhead_pinned_version{kind=\"runtime\"}") == 2)

        // A rollout of the pinned kind is refused and stores nothing.
        let refused = try host.cli(["rollout", "start", "--kind", "runtime", try rollouts.writeFile(host, "next.lua", DefaultRuntime.source)])
        print(refused.output)
        #expect(refused.status != 0)
        #expect(refused.output.contains("pinned") && refused.output.contains("break-glass unpin --kind runtime"))
        #expect(try storedVersions(host, .runtime) == [1, 2], "the refused start stored no version")

        // The pin holds until unpin, which changes nothing that runs.
        let unpin = try host.cli(["break-glass", "unpin", "--kind", "runtime"])
        print(unpin.output)
        #expect(unpin.status == 0)
        #expect(try statusJSON(host)["pins"] as? [String: Int] == [:])
        #expect(try host.cli(["status"]).output.contains("nothing pinned"))
        #expect(try host.api("GET", "/", token: nil).body.contains("data-pinned-runtime") == false)
        #expect(metric(try host.api("GET", "/metrics", token: nil).body, "bulkhead_pinned_version{kind=\"runtime\"}") == nil)
        #expect(try rollouts.versions(host).values.allSatisfy { $0.allSatisfy { $0.runtime == 2 } })
        let events = try host.cli(["events", "--json", "--last", "10000"])
        #expect(events.output.contains("break-glass.rollback") && events.output.contains("break-glass.unpin"), "both are audited")
        // Each line is one object whose detail is an object too, not JSON inside a string.
        let objects = events.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(!objects.isEmpty && objects.allSatisfy { $0["detail"] is [String: Any] }, "\(events.output.suffix(400))")
        let again = try rollouts.startRollout(host, kind: "runtime", file: try rollouts.writeFile(host, "again.lua", DefaultRuntime.source))
        #expect(try rollouts.waitForEnd(host, again) == "completed", "rollouts run again once unpinned")
        let report = run.stop()
        print(report.summary)
    }

    @Test func aRolloutStartRefusedByAFreezeStoresNothing() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rollouts = RolloutIntegrationTests()
        let freeze = try host.cli(["break-glass", "freeze"])
        #expect(freeze.status == 0)
        #expect(try statusJSON(host)["frozen"] as? Bool == true)
        #expect(metric(try host.api("GET", "/metrics", token: nil).body, "bulkhead_frozen") == 1)
        #expect(try host.api("GET", "/", token: nil).body.contains("data-frozen=\"true\""))
        for kind in ["rules", "runtime"] {
            let file = try rollouts.writeFile(
                host, "artifact-\(kind)", kind == "rules" ? RolloutIntegrationTests.rules(killswitch: false) : DefaultRuntime.source)
            let refused = try host.cli(["rollout", "start", "--kind", kind, file])
            print(refused.output)
            #expect(refused.status != 0)
            #expect(refused.output.contains("frozen"))
        }
        #expect(try storedVersions(host, .rules).isEmpty, "no rules version stored by a refused start")
        #expect(try storedVersions(host, .runtime).isEmpty, "no runtime version stored by a refused start")
        #expect(try host.cli(["break-glass", "unfreeze"]).status == 0)
        let id = try rollouts.startRollout(
            host, kind: "rules", file: try rollouts.writeFile(host, "rules.json", RolloutIntegrationTests.rules(killswitch: false)))
        #expect(id == 1)
        #expect(try storedVersions(host, .rules) == [1], "the first stored rules version is the one that started")
    }

    @Test func readCommandsOnADirectoryWithoutAStoreFailNamingItAndCreateNothing() throws {
        let root = FileManager.default.temporaryDirectory.path + "/bulkhead-empty-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let binary = HostHarness.locateBinary()
        for data in [root, root + "/missing"] {
            for command in [["break-glass", "status"], ["break-glass", "status", "--json"], ["events"],
                            ["break-glass", "freeze"], ["break-glass", "unpin", "--kind", "runtime"],
                            ["break-glass", "rollback", "--kind", "runtime", "--yes"]] {
                let (status, output) = try HostHarness.cli(binary: binary, command + ["--data", data])
                print("\(command) --data \(data): exit \(status): \(output)")
                #expect(status == 1, "\(command) on \(data)")
                // Break glass lives in the host's replica; `events` reads the control store's log.
                let file = command[0] == "events" ? "/bulkhead.sqlite" : "/host.sqlite"
                #expect(output.contains(data + file), "\(command): the error names the path of the file it needs")
                #expect(!output.contains("frozen: no"), "\(command): no answer made up")
                #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty, "\(command) created nothing")
            }
        }
    }
}
