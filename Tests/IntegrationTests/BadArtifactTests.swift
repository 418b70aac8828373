#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// Bad platform artifacts at `bulkhead rollout start`: each is refused by the
/// producer's checks with a message that says what is wrong, nothing is stored or
/// shipped, and the pools serve on untouched. (RolloutTests covers a rules file over
/// the 200-rule limit, rules that slip past the producer, and a binary that crashes
/// under traffic.)
@Suite(.serialized) struct BadArtifactTests {
    struct Bad: CustomStringConvertible {
        var name: String
        var kind: String
        /// The file's content (runtime, rules) or, for a binary, a shell script to run
        /// as the binary (nil: `path` is given as is).
        var content: [UInt8]?
        var path: String? = nil
        var says: [String]
        var description: String { name }
    }

    static func text(_ string: String) -> [UInt8] { Array(string.utf8) }

    static let cases: [Bad] = [
        // Runtimes: compiled (never run) by `bulkhead check-artifact` in a child process.
        Bad(name: "runtime with a syntax error", kind: "runtime",
            content: text("function on_request(req, rules)\n  return nil\nedn\n"),
            says: ["invalid-runtime", "runtime.lua:3: 'end' expected (to close 'function' at line 1) near 'edn'"]),
        Bad(name: "runtime as Lua bytecode", kind: "runtime", content: [0x1b, 0x4c, 0x75, 0x61, 0x54, 0x00, 0x19, 0x93],
            says: ["invalid-runtime", "attempt to load a binary chunk"]),
        Bad(name: "runtime over 256 KiB", kind: "runtime",
            content: text("function on_request(req, rules) return nil end\n" + String(repeating: "-- padding\n", count: 30_000)),
            says: ["too-large", "over the 262144-byte limit"]),
        // Rules: validated as JSON and against the schema and the limits.
        Bad(name: "rules not JSON", kind: "rules", content: text("{rules: []}"), says: ["invalid-rules", "not valid JSON"]),
        Bad(name: "rules nested 100000 deep", kind: "rules", content: text(String(repeating: "[", count: 100_000)),
            says: ["invalid-rules", "not valid JSON"]),
        Bad(name: "rule without an id", kind: "rules", content: text(#"{"rules": [{"action": "block"}], "rulesets": {}}"#),
            says: ["invalid-rules", #"rules[0]: missing "id""#]),
        Bad(name: "unknown action", kind: "rules", content: text(#"{"rules": [{"id": "a", "action": "explode"}], "rulesets": {}}"#),
            says: ["invalid-rules", #"action "explode" is not one of block, log, skip, execute"#]),
        Bad(name: "execute of a missing ruleset", kind: "rules",
            content: text(#"{"rules": [{"id": "a", "action": "execute", "ruleset": "nowhere"}], "rulesets": {}}"#),
            says: ["invalid-rules", "nowhere"]),
        Bad(name: "rulesets in a loop", kind: "rules", content: text(#"""
            {"rules": [{"id": "a", "action": "execute", "ruleset": "x"}],
             "rulesets": {"x": [{"id": "b", "action": "execute", "ruleset": "y"}], "y": [{"id": "c", "action": "execute", "ruleset": "x"}]}}
            """#), says: ["invalid-rules", "execute each other in a loop"]),
        // Binaries: must be an absolute path to an executable that answers the probe.
        Bad(name: "binary given by a relative path", kind: "binary", content: nil, path: "relative/bulkhead",
            says: ["invalid-binary", "is not an executable file"]),
        Bad(name: "binary that does not exist", kind: "binary", content: nil, path: "/nonexistent/bulkhead",
            says: ["invalid-binary", "/nonexistent/bulkhead is not an executable file"]),
        Bad(name: "binary that is a directory", kind: "binary", content: nil, path: "/tmp",
            says: ["invalid-binary", "/tmp is not an executable file"]),
        Bad(name: "binary without a #! line", kind: "binary", content: text("echo '{\"protocol\":1}'\n"),
            says: ["invalid-binary", "is neither an ELF executable nor a script starting with #!"]),
        Bad(name: "binary whose probe fails", kind: "binary", content: text("#!/bin/sh\necho 'segmentation fault' >&2\nexit 139\n"),
            says: ["invalid-binary", "probe answered 139", "segmentation fault", #"expected {"protocol":1}"#]),
        Bad(name: "binary of another protocol", kind: "binary", content: text("#!/bin/sh\necho '{\"protocol\":2}'\n"),
            says: ["invalid-binary", #"probe answered 0: {"protocol":2}"#]),
        Bad(name: "binary whose probe hangs", kind: "binary", content: text("#!/bin/sh\nexec sleep 60\n"),
            says: ["invalid-binary", "probe did not answer within 10 s"]),
    ]

    @Test func badArtifactsAreRefusedAndNothingShips() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rollouts = RolloutIntegrationTests()
        let run = try host.steadyLoad(rate: 20)
        defer { _ = run.stop() }
        let versionsBefore = try rollouts.versions(host)

        for (index, bad) in Self.cases.enumerated() {
            var file = bad.path ?? ""
            if let content = bad.content {
                file = host.root + "/artifact-\(index)"
                try Data(content).write(to: URL(fileURLWithPath: file))
                if bad.kind == "binary" { chmod(file, 0o755) }
            }
            let started = Date()
            let result = try host.cli(["rollout", "start", "--kind", bad.kind, file])
            let seconds = Date().timeIntervalSince(started)
            print("\(bad.name): exit \(result.status) after \(String(format: "%.1f", seconds)) s: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300))")
            #expect(result.status != 0, "\(bad.name)")
            for fragment in bad.says {
                #expect(result.output.contains(fragment), "\(bad.name): want \(fragment.debugDescription) in \(result.output)")
            }
        }
        let list = try host.cli(["rollout", "list", "--json"])
        #expect(list.output.trimmingCharacters(in: .whitespacesAndNewlines) == #"{"rollouts":[]}"#, "no rollout was created: \(list.output)")
        #expect(try rollouts.versions(host) == versionsBefore, "no worker got anything")
        let events = try host.cli(["events", "--json", "--last", "10000"])
        #expect(!events.output.contains("artifact"), "no artifact was stored: \(events.output.suffix(500))")
        // The control: a good rules file is accepted by the same command.
        let good = try rollouts.startRollout(host, kind: "rules", file: try rollouts.writeFile(
            host, "good.json", RolloutIntegrationTests.rules(killswitch: false)))
        #expect(try rollouts.waitForEnd(host, good) == "completed")
        let report = run.stop()
        print(report.summary)
        #expect(report.failed == 0)
    }

    /// A runtime that compiles but defines no `on_request`: the producer only compiles
    /// runtimes (it never runs artifact code), so this one reaches the free canary,
    /// whose worker refuses to load it and keeps its last known good runtime; the gate
    /// sees the load failure and rolls it back before any other pool gets it.
    @Test func aRuntimeWithoutOnRequestStopsAtTheCanary() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rollouts = RolloutIntegrationTests()
        let run = try host.steadyLoad(rate: 30)
        defer { _ = run.stop() }
        let file = try rollouts.writeFile(host, "no-on-request.lua", "local version = 2\nfunction on_reqest(req, rules) return nil end\n")
        let id = try rollouts.startRollout(host, kind: "runtime", file: file)
        var othersSawIt = false
        var state = ""
        let ended = waitFor(timeout: 60, interval: 0.05) {
            if let all = try? rollouts.versions(host),
               (all["pro"] ?? []).contains(where: { $0.runtime == 1 }) || (all["enterprise"] ?? []).contains(where: { $0.runtime == 1 }) {
                othersSawIt = true
            }
            state = ((try? rollouts.rolloutState(host, id)["state"] as? [String: Any])?.keys.first) ?? ""
            return ["completed", "rolledBack", "aborted"].contains(state)
        }
        print("runtime without on_request: rollout \(state) after \(ended.map { String(format: "%.1f s", $0) } ?? "never")")
        print(try host.cli(["rollout", "status", String(id)]).output)
        #expect(state == "rolledBack")
        #expect(!othersSawIt)
        #expect(try rollouts.versions(host).values.allSatisfy { $0.allSatisfy { $0.runtime == 0 } }, "every worker kept the built-in runtime")
        #expect(host.supervisorOutput().contains("on_request"), "the supervisor's log says what was wrong")
        let report = run.stop()
        print(report.summary)
        #expect(report.failed == 0, "a runtime that fails to load fails open: no request fails")
    }
}
