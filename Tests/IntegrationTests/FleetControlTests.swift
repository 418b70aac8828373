#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Rollout
import Etcd
import Foundation
import Store
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

    /// The driver's leader key, read from etcd: `{"api", "machine", "pid", "startedAt"}`.
    struct Leader: Decodable {
        var pid: pid_t
        var api: String
    }

    /// Who the driver's leader key names, read from etcd.
    func leader(_ client: EtcdClient, _ fleet: Fleet) async throws -> Leader? {
        guard let value = try await client.get(fleet.prefix + "driver/leader").first?.value else { return nil }
        return try JSONDecoder().decode(Leader.self, from: Data(value))
    }

    /// Whose pid the driver's leader key names, read from etcd.
    func leaderPID(_ client: EtcdClient, _ fleet: Fleet) async throws -> pid_t? {
        try await leader(client, fleet)?.pid
    }

    /// Writes host `name`'s key with a report token's hash (on a lease, as its agent
    /// does) and sends the leader at `api` one report: pools free and pro. What a
    /// rollout needs to be planned, for the tests that do not run host agents.
    func report(as name: String, fleet: Fleet, client: EtcdClient, api: String) async throws {
        let token = "bhh_report-of-\(name)"
        let lease = try await client.grantLease(ttl: 30)
        let record = #"{"appliedRevision":null,"group":"g1","name":""# + name + #"","pid":1,"#
            + #""reportTokenHash":"\#(TokenHash.of(token: token))","updatedAt":"2026-12-07T12:00:00.000Z"}"#
        _ = try await client.put(fleet.prefix + "host/" + name, record, lease: lease.id)
        let pools = ["free", "pro"].enumerated().map { order, pool in
            PoolStatus(name: pool, order: order + 1, port: 1, desiredWorkers: 2, configSource: "file", configError: nil,
                       degraded: false, restarts: 0, quarantined: [], workers: [])
        }
        let body = try Array(JSONEncoder().encode(HostReport(host: name, group: "g1", status: HostStatus(supervisorPID: 1, takenAt: 0, pools: pools))))
        let port = try #require(Int(api.split(separator: ":").last ?? ""))
        let answer = httpRequest(port: port, method: "POST", path: "/v1/fleet/hosts/\(name)/report",
                                 headers: ["Authorization": "Bearer \(token)"], body: body, timeout: 5)
        #expect(answer?.status == 204, "the leader takes \(name)'s report: \(answer?.body ?? "no answer")")
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
            // A rollout is planned over the hosts reporting to the leader.
            try await report(as: "h1", fleet: fleet, client: client, api: try #require(try await leader(client, fleet)?.api))
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
            // Hosts find the new leader (an agent reads driver/leader again within 10 s).
            try await report(as: "h1", fleet: fleet, client: client, api: try #require(try await leader(client, fleet)?.api))
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

    /// An operator acts on the fleet with `--etcd`: the CLI opens a session in the
    /// store, and a control process takes its token while the key lives. A host's
    /// health report is taken only by the leader, and only with the token whose hash
    /// the host's own key holds. Keys are written here as the CLI and a host write them.
    @Test func sessionsAndHostReportsAreCheckedAgainstTheStore() async throws {
        try await withFleet { fleet, client in
            let first = try await offPool { try fleet.start("a") }
            _ = try await waitForLeader(client, fleet, among: [first])
            let api = try #require(try await leader(client, fleet)?.api)
            let port = try #require(Int(api.split(separator: ":").last ?? ""))
            func call(_ method: String, _ path: String, token: String, body: [UInt8] = []) -> Int {
                httpRequest(port: port, method: method, path: path, headers: ["Authorization": "Bearer \(token)"],
                            body: body, timeout: 5)?.status ?? -1
            }

            // An operator session: a token is the admin's while session/HASH lives.
            let token = "bho_session-of-this-test"
            #expect(call("GET", "/v1/admin/customers", token: token) == 401, "no session: refused")
            let lease = try await client.grantLease(ttl: 30)
            _ = try await client.put(fleet.prefix + "session/" + TokenHash.of(token: token),
                                     #"{"actor":"test@here","openedAt":"2026-12-07T12:00:00.000Z"}"#, lease: lease.id)
            #expect(call("GET", "/v1/admin/customers", token: token) == 200, "an open session acts as the operator")
            _ = try await client.revokeLease(lease.id)
            #expect(call("GET", "/v1/admin/customers", token: token) == 401, "a session whose lease ended is refused")

            // The CLI with --etcd opens its own session and finds the leader.
            let etcd = ["--etcd", fleet.endpoints, "--etcd-prefix", fleet.prefix]
            let added = try await offPool { try HostHarness.cli(binary: fleet.binary, ["customer", "add", "acme", "--cohort", "pro"] + etcd) }
            #expect(added.status == 0 && added.output.contains("bht_"), "customer add --etcd: \(added.output)")
            let listed = try await offPool { try fleet.cli("a", ["customer", "list"]) }
            #expect(listed.output.contains("acme"), "the customer is in the fleet's store: \(listed.output)")
            let hostOnly = try await offPool { try HostHarness.cli(binary: fleet.binary, ["cohort", "scale", "pro", "--workers", "3"] + etcd) }
            #expect(hostOnly.status != 0 && hostOnly.output.contains("one host"), "a host's own command is refused with --etcd: \(hostOnly.output)")

            // Fleet-wide break glass, straight to the store: the leader starts nothing while frozen.
            let frozen = try await offPool { try HostHarness.cli(binary: fleet.binary, ["break-glass", "freeze"] + etcd) }
            #expect(frozen.status == 0, "\(frozen.output)")
            let rules = fleet.root + "/rules.json"
            try RolloutIntegrationTests.rules(killswitch: false).write(toFile: rules, atomically: true, encoding: .utf8)
            let refusedStart = try await offPool {
                try HostHarness.cli(binary: fleet.binary, ["rollout", "start", "--kind", "rules", rules] + etcd)
            }
            #expect(refusedStart.status != 0 && refusedStart.output.contains("frozen"), "frozen fleet: \(refusedStart.output)")
            let events = try await offPool { try HostHarness.cli(binary: fleet.binary, ["events", "--json"] + etcd) }
            #expect(events.output.contains("fleet-frozen") && events.output.contains("etcd-operator:"),
                    "the freeze is audited with who did it: \(events.output)")
            let thawed = try await offPool { try HostHarness.cli(binary: fleet.binary, ["break-glass", "unfreeze"] + etcd) }
            #expect(thawed.status == 0, "\(thawed.output)")
            let glass = try await offPool { try HostHarness.cli(binary: fleet.binary, ["break-glass", "status", "--json"] + etcd) }
            #expect(glass.output.contains("\"frozen\":false"), "\(glass.output)")

            // A host's report: refused until its key holds the token's hash, then taken.
            let pool = PoolStatus(name: "pro", order: 1, port: 1, desiredWorkers: 1, configSource: "file", configError: nil,
                                  degraded: false, restarts: 0, quarantined: [], workers: [])
            let report = try Array(JSONEncoder().encode(HostReport(
                host: "h1", group: "g1", status: HostStatus(supervisorPID: 1, takenAt: 0, pools: [pool]))))
            let reportToken = "bhh_report-of-h1"
            let path = "/v1/fleet/hosts/h1/report"
            #expect(call("POST", path, token: reportToken, body: report) == 401, "no host key: refused")
            let hostLease = try await client.grantLease(ttl: 30)
            let record = #"{"appliedRevision":null,"group":"g1","name":"h1","pid":1,"#
                + #""reportTokenHash":"\#(TokenHash.of(token: reportToken))","updatedAt":"2026-12-07T12:00:00.000Z"}"#
            _ = try await client.put(fleet.prefix + "host/h1", record, lease: hostLease.id)
            #expect(call("POST", path, token: "bhh_someone-else", body: report) == 401, "another token: refused")
            #expect(call("POST", "/v1/fleet/hosts/h2/report", token: reportToken, body: report) == 400,
                    "a report sent for another host: refused")
            #expect(call("POST", path, token: reportToken, body: report) == 204, "the host's own token: taken")

            let status = try await offPool { try HostHarness.cli(binary: fleet.binary, ["status", "--json"] + etcd) }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let fleetStatus = try decoder.decode(FleetStatus.self, from: Data(status.output.utf8))
            let h1 = try #require(fleetStatus.hosts.first { $0.name == "h1" }, "\(status.output)")
            #expect(h1.alive && h1.group == "g1" && h1.status?.pools.map(\.name) == ["pro"], "status --etcd shows h1 and its pools")
            #expect(fleetStatus.leading)

            // A follower takes no reports: the host asks the store who leads and sends there.
            _ = try await offPool { try fleet.start("b") }
            let health = try await offPool {
                try #require(SocketClient.request(socket: fleet.data("b") + "/run/control.sock", "GET", "/healthz", timeout: 2))
            }
            let followerAPI = try #require(try JSONDecoder().decode(Health.self, from: Data(health.body.utf8)).api)
            let followerPort = try #require(Int(followerAPI.split(separator: ":").last ?? ""))
            let refused = httpRequest(port: followerPort, method: "POST", path: path,
                                      headers: ["Authorization": "Bearer \(reportToken)"], body: report, timeout: 5)
            #expect(refused?.status == 503, "a follower refuses reports: \(refused?.body ?? "no answer")")
            _ = try await client.revokeLease(hostLease.id)
        }
    }
}
