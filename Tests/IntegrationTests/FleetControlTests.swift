#if canImport(Glibc)
import Glibc
#endif
import Etcd
import Foundation
import Testing

/// `bulkhead control --etcd`: several control processes on one fleet store. Every
/// one takes writes (numbers come from etcd transactions, so they never collide);
/// one leads the rollout driver, and a leader paused past its lease writes nothing
/// once it resumes. Real etcd, real `bulkhead control` processes.
@Suite(.serialized) struct FleetControlTests {
    /// Control processes of one fleet on this machine, each with its own data
    /// directory (so its own control.lock and control.sock).
    final class Fleet: @unchecked Sendable {
        let root: String
        let cohorts: String
        let binary = HostHarness.locateBinary()
        let endpoints: String
        let prefix = "/fleet-\(UUID().uuidString.prefix(8))/"
        /// The control processes started, by name (children of init: the shell that
        /// started each one has exited).
        private(set) var pids: [String: pid_t] = [:]

        init(endpoints: [String]) throws {
            self.endpoints = endpoints.joined(separator: ",")
            root = FileManager.default.temporaryDirectory.path + "/bulkhead-fleet-\(getpid())-\(UUID().uuidString.prefix(8))"
            cohorts = root + "/cohorts"
            try FileManager.default.createDirectory(atPath: cohorts, withIntermediateDirectories: true)
            for (order, name) in ["free", "pro"].enumerated() {
                try """
                    name = "\(name)"
                    order = \(order + 1)
                    port = 0
                    workers = 2
                    canary_workers = 1

                    [gate]
                    bake_seconds = 1
                    """.write(toFile: cohorts + "/\(name).toml", atomically: true, encoding: .utf8)
            }
        }

        func data(_ name: String) -> String { root + "/data-" + name }

        /// Starts `bulkhead control --etcd` named `name`; returns its pid once it answers
        /// on its control.sock.
        ///
        /// Started through a shell that puts it in the background and exits: `bulkhead
        /// control` closes every inherited descriptor, among them the one Foundation's
        /// `Process` watches to learn that a child ended, which would leave Foundation
        /// waiting on it (and on every later child) for as long as control runs.
        func start(_ name: String) throws -> pid_t {
            try FileManager.default.createDirectory(atPath: data(name), withIntermediateDirectories: true)
            let launcher = Process()
            launcher.executableURL = URL(fileURLWithPath: "/bin/sh")
            launcher.arguments = [
                "-c", #""$0" "$@" >"$LOG" 2>&1 </dev/null & echo $!"#, binary,
                "control", "--data", data(name), "--cohorts", cohorts, "--api", "127.0.0.1:0",
                "--etcd", endpoints, "--etcd-prefix", prefix,
                // The leader's upkeep every second, keeping 50 revisions of history.
                "--etcd-housekeeping-interval", "1", "--etcd-keep-revisions", "50",
            ]
            launcher.environment = ProcessInfo.processInfo.environment.merging(["LOG": root + "/control-\(name).log"]) { $1 }
            let pipe = Pipe()
            launcher.standardOutput = pipe
            launcher.standardInput = FileHandle.nullDevice
            try launcher.run()
            let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            launcher.waitUntilExit()
            guard let pid = pid_t(printed.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw HarnessError("control \(name) did not start: \(printed)")
            }
            pids[name] = pid
            let socket = data(name) + "/run/control.sock"
            let answered = waitFor(timeout: 30, interval: 0.05) {
                SocketClient.request(socket: socket, "GET", "/healthz", timeout: 1)?.status == 200
            }
            guard answered != nil else { throw HarnessError("control \(name) did not answer: \(log(name))") }
            return pid
        }

        func log(_ name: String) -> String {
            (try? String(contentsOfFile: root + "/control-\(name).log", encoding: .utf8)) ?? ""
        }

        /// The CLI against control `name`.
        func cli(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
            try HostHarness.cli(binary: binary, arguments + ["--data", data(name)])
        }

        /// Stops every control process, by pid (SIGCONT first: one may be stopped);
        /// SIGKILL for one still there after 10 s.
        func stop() {
            for pid in pids.values {
                kill(pid, SIGCONT)
                kill(pid, SIGTERM)
            }
            for pid in pids.values where waitFor(timeout: 10, interval: 0.05, { kill(pid, 0) != 0 }) == nil {
                kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Runs blocking work (processes, waits) on a thread of its own: never on Swift's
    /// cooperative threads, which a blocked `Process` wait can starve.
    func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// A fresh etcd and a fleet on it; every process stopped after `body`, whatever it did.
    func withFleet(_ body: (Fleet, EtcdClient) async throws -> Void) async throws {
        try await withEtcd { cluster, client in
            let fleet = try Fleet(endpoints: cluster.endpoints)
            do {
                try await body(fleet, client)
            } catch {
                try await offPool { fleet.stop() }
                throw error
            }
            try await offPool { fleet.stop() }
        }
    }

    /// Whose pid the driver's leader key names, read from etcd.
    func leaderPID(_ client: EtcdClient, _ fleet: Fleet) async throws -> pid_t? {
        guard let value = try await client.get(fleet.prefix + "driver/leader").first?.value else { return nil }
        let text = String(decoding: value, as: UTF8.self)
        guard let range = text.range(of: "pid ") else { return nil }
        return pid_t(text[range.upperBound...].prefix { $0.isNumber })
    }

    func waitForLeader(_ client: EtcdClient, _ fleet: Fleet, among pids: Set<pid_t>, timeout: Duration = .seconds(30)) async throws -> pid_t {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if let pid = try? await leaderPID(client, fleet), pids.contains(pid) { return pid }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("no leader among \(pids.sorted()) within \(timeout)")
    }

    @Test func twoControlProcessesUploadingOneScriptAtOnceGetDenseVersions() async throws {
        try await withFleet { fleet, client in
            _ = try await offPool { try fleet.start("a") }
            _ = try await offPool { try fleet.start("b") }
            let added = try await offPool { try fleet.cli("a", ["customer", "add", "acme", "--cohort", "pro"]) }
            #expect(added.status == 0, "\(added.output)")
            let file = fleet.root + "/hello.lua"
            try "function handle(req) return 'hi' end\n".write(toFile: file, atomically: true, encoding: .utf8)

            // 100 uploads through each process at once; one refused for the upload
            // rate (per customer and process) is tried again.
            let perProcess = 100
            let started = ContinuousClock.now
            let versions = try await withThrowingTaskGroup(of: [Int].self) { group in
                for name in ["a", "b"] {
                    group.addTask {
                        var mine: [Int] = []
                        while mine.count < perProcess {
                            let result = try await offPool { try fleet.cli(name, ["script", "put", "acme", "hello", file]) }
                            if result.status == 0, let version = Int(result.output.split(separator: "\n").last ?? "") {
                                mine.append(version)
                            } else if result.output.contains("rate") {
                                try await Task.sleep(for: .milliseconds(150))
                            } else {
                                throw HarnessError("upload through \(name) failed: \(result.output)")
                            }
                        }
                        return mine
                    }
                }
                var all: [Int] = []
                for try await part in group { all += part }
                return all
            }
            let seconds = (ContinuousClock.now - started).seconds
            print("fleet: \(versions.count) uploads through two control processes in \(String(format: "%.1f", seconds)) s")
            #expect(versions.sorted() == Array(1...(2 * perProcess)), "versions dense and unique")
            // The leader's upkeep compacted the history behind the uploads.
            let start = ContinuousClock.now
            var compacted = false
            while !compacted, ContinuousClock.now - start < .seconds(30) {
                do {
                    _ = try await client.get(fleet.prefix + "audit/next", revision: 2)
                    try await Task.sleep(for: .milliseconds(100))
                } catch EtcdError.compacted {
                    compacted = true
                }
            }
            print("fleet: etcd history compacted by the leader's upkeep: \(compacted)")
            #expect(compacted, "the leading control process compacts etcd's history on its schedule")
            // Both processes read the same store: the active version is the last one.
            for name in ["a", "b"] {
                let list = try await offPool { try fleet.cli(name, ["script", "list", "acme", "--json"]) }
                #expect(list.output.contains("\"active_version\":\(2 * perProcess)"),
                        "control \(name) lists version \(2 * perProcess) active: \(list.output)")
            }
        }
    }

    @Test func aLeaderPausedPastItsLeaseIsReplacedAndWritesNothingOnceItResumes() async throws {
        try await withFleet { fleet, client in
            let first = try await offPool { try fleet.start("a") }
            _ = try await waitForLeader(client, fleet, among: [first])
            let second = try await offPool { try fleet.start("b") }
            let rules = fleet.root + "/rules.json"
            try RolloutIntegrationTests.rules(killswitch: false).write(toFile: rules, atomically: true, encoding: .utf8)
            let started = try await offPool { try fleet.cli("a", ["rollout", "start", "--kind", "rules", rules]) }
            #expect(started.status == 0, "\(started.output)")
            let id = try #require(Int(started.output.split(separator: "\n").last ?? ""))
            // A follower starts nothing: the driver is the leader's.
            let refused = try await offPool { try fleet.cli("b", ["rollout", "pause", String(id)]) }
            #expect(refused.status != 0, "a follower refuses to operate a rollout: \(refused.output)")

            let stoppedAt = ContinuousClock.now
            #expect(kill(first, SIGSTOP) == 0)
            let took = try await waitForLeader(client, fleet, among: [second], timeout: .seconds(60))
            print("fleet: control \(took) leads \(String(format: "%.2f", (ContinuousClock.now - stoppedAt).seconds)) s after the leader was stopped")
            // Past the lease, with the other one leading: the first resumes and is asked
            // to pause the rollout at once, before it may have noticed.
            #expect(kill(first, SIGCONT) == 0)
            let late = try await offPool { try fleet.cli("a", ["rollout", "pause", String(id)]) }
            print("fleet: the resumed old leader asked to pause: exit \(late.status): \(late.output.split(separator: "\n").last ?? "")")
            #expect(late.status != 0, "the old leader's write is refused")
            let status = try await offPool { try fleet.cli("b", ["rollout", "status", String(id), "--json"]) }
            #expect(!status.output.contains("\"paused\""), "nothing the old leader did landed: \(status.output)")

            // The new leader drives: it can pause the rollout.
            let paused = try await offPool { try fleet.cli("b", ["rollout", "pause", String(id)]) }
            #expect(paused.status == 0, "\(paused.output)")
            let after = try await offPool { try fleet.cli("a", ["rollout", "status", String(id), "--json"]) }
            #expect(after.output.contains("\"paused\""), "the new leader's pause is in the store: \(after.output)")
        }
    }
}
