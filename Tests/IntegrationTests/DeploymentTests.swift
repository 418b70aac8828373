#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Synchronization
import Testing

/// Keep-alive clients that send a customer's script requests at a steady rate, each
/// keyed by an `x-user` header drawn in turn from a fixed set of users (so one user's
/// requests land on every connection, hence on both workers), and record every
/// answer: when, which user, status, body.
final class KeyedTraffic: @unchecked Sendable {
    struct Answer {
        var at: Double
        var user: Int
        var status: Int
        var body: String
    }

    private let answers = Mutex<[Answer]>([])
    private let next = Mutex(0)
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchGroup()
    let started = Date()

    /// Starts `connections` clients at `rate` requests a second in all.
    init(port: Int, host: String, users: Int, connections: Int = 4, rate: Double) {
        let interval = Double(connections) / rate
        for _ in 0..<connections {
            done.enter()
            Thread.detachNewThread { [self] in
                defer { done.leave() }
                var fd: Int32 = -1
                var nextAt = Date().timeIntervalSince1970
                while !stopping.load(ordering: .relaxed) {
                    if fd < 0 { fd = connectLoopback(port: port, timeout: 5) ?? -1 }
                    if fd < 0 { usleep(10_000); continue }
                    let user = next.withLock { value in
                        value += 1
                        return value % users
                    }
                    let request = "GET /x HTTP/1.1\r\nHost: \(host)\r\nx-user: u\(user)\r\n\r\n"
                    let at = Date().timeIntervalSince(started)
                    guard let answer = Self.exchange(fd, request) else {
                        close(fd)
                        fd = -1
                        continue
                    }
                    answers.withLock { $0.append(Answer(at: at, user: user, status: answer.status, body: answer.body)) }
                    if answer.close {
                        close(fd)
                        fd = -1
                    }
                    nextAt += interval
                    let wait = nextAt - Date().timeIntervalSince1970
                    if wait > 0 { usleep(UInt32(wait * 1_000_000)) } else { nextAt = Date().timeIntervalSince1970 }
                }
                if fd >= 0 { close(fd) }
            }
        }
    }

    /// Every answer so far, in the order they were recorded.
    var recorded: [Answer] { answers.withLock { $0 } }

    /// Stops the clients; returns every answer.
    func stop() -> [Answer] {
        stopping.store(true, ordering: .relaxed)
        done.wait()
        return recorded
    }

    /// One request and its answer on a keep-alive connection (Content-Length bodies).
    private static func exchange(_ fd: Int32, _ request: String) -> (status: Int, body: String, close: Bool)? {
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return nil }
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            if let end = data.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).lowercased()
                let lines = head.split(separator: "\r\n")
                guard let status = lines.first.flatMap({ Int($0.split(separator: " ").dropFirst().first ?? "") }) else { return nil }
                let length = lines.first { $0.hasPrefix("content-length:") }.flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
                let close = lines.contains { $0.hasPrefix("connection:") && $0.contains("close") }
                if data.count >= end.upperBound + length {
                    return (status, String(decoding: data[end.upperBound..<(end.upperBound + length)], as: UTF8.self), close)
                }
            }
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 { return nil }
            data.append(contentsOf: chunk[0..<count])
        }
    }
}

/// Customers' gradual deployments on a real host: a candidate version takes a
/// growing share of one script's requests, each step judged by the cohort's gate
/// against the version it replaces, and rolled back on its own when it fails.
@Suite(.serialized) struct DeploymentTests {
    static let gate = """
        [gate]
        bake_seconds = 1
        max_bake_seconds = 90
        min_requests = 20
        max_error_rate_increase = 0.005
        max_new_signatures = 0
        """

    /// One pool of two workers, a customer `acme` with its token, and `app` version 1.
    func start(_ v1: String) throws -> (host: HostHarness, token: String, port: Int) {
        let host = try HostHarness(pools: [])
        try host.writeRawCohort("free", """
            name = "free"
            order = 1
            port = 0
            workers = 2
            canary_workers = 1
            [limits]
            instructions = 5000000
            memory_mb = 16
            wall_ms = 400
            \(Self.gate)
            """)
        try host.start()
        let token = try host.addCustomer("acme", cohort: "free")
        let put = try host.api("PUT", "/v1/scripts/app", token: token, body: Array(v1.utf8))
        #expect(put.status == 201, "\(put.body)")
        let port = try host.pool("free").port
        let served = waitFor(timeout: 30, interval: 0.05) {
            httpRequest(port: port, host: "app.acme.localhost", path: "/x", headers: ["x-user": "u1"])?.status == 200
        }
        #expect(served != nil, "version 1 serves")
        return (host, token, port)
    }

    /// Stores `source` as the next version without making it live, and deploys it.
    func deploy(_ host: HostHarness, token: String, _ source: String, body: String) throws -> Int {
        let put = try host.api("PUT", "/v1/scripts/app?live=false", token: token, body: Array(source.utf8))
        #expect(put.status == 201, "\(put.body)")
        let version = try #require((try JSONSerialization.jsonObject(with: Data(put.body.utf8)) as? [String: Any])?["version"] as? Int)
        let answer = try host.api(
            "POST", "/v1/scripts/app/deployments", token: token, body: Array(body.replacingOccurrences(of: "VERSION", with: String(version)).utf8))
        #expect(answer.status == 201, "\(answer.body)")
        return try #require((try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])?["id"] as? Int)
    }

    func deployment(_ host: HostHarness, token: String, _ id: Int) throws -> [String: Any] {
        let answer = try host.api("GET", "/v1/scripts/app/deployments/\(id)", token: token)
        return (try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]) ?? [:]
    }

    /// Waits until the deployment is in one of `states`; returns it.
    func waitForState(_ host: HostHarness, token: String, _ id: Int, _ states: Set<String>, timeout: Double) throws -> [String: Any] {
        var last: [String: Any] = [:]
        let reached = waitFor(timeout: timeout, interval: 0.1) {
            last = (try? deployment(host, token: token, id)) ?? [:]
            return states.contains(last["state"] as? String ?? "")
        }
        guard reached != nil else { throw HarnessError("deployment \(id) did not reach \(states): \(last)") }
        return last
    }

    static func failedVerdict(_ deployment: [String: Any]) -> [String: Any] {
        let decisions = deployment["decisions"] as? [[String: Any]] ?? []
        return decisions.last { $0["event"] as? String == "failed" }?["verdict"] as? [String: Any] ?? [:]
    }

    /// A step passes once it has its minimum of requests with nothing failed: at 5%
    /// a step of 20 requests shows no error one time in three, so this deployment
    /// asks for 100 a step (one time in 170).
    @Test func aVersionWithANewErrorSignatureIsRolledBackAtItsFirstStep() throws {
        let (host, token, port) = try start(#"function handle(req) return "v1" end"#)
        defer { host.stop() }
        let traffic = KeyedTraffic(port: port, host: "app.acme.localhost", users: 100_000, rate: 200)
        usleep(1_000_000)
        let id = try deploy(host, token: token, """
            function handle(req)
              if math.random() < 0.05 then error("lost the session table") end
              return "v2"
            end
            """, body: #"{"version": VERSION, "strategy": "gradual", "key_header": "x-user", "gate": {"min_requests": 100}}"#)
        let ended = try waitForState(host, token: token, id, ["rolled-back", "completed", "paused"], timeout: 120)
        let seenAt = Date().timeIntervalSince(traffic.started)
        usleep(500_000)
        let answers = traffic.stop()
        #expect(ended["state"] as? String == "rolled-back", "\(ended)")
        let decisions = ended["decisions"] as? [[String: Any]] ?? []
        let failed = try #require(decisions.last { $0["event"] as? String == "failed" })
        #expect(failed["step"] as? Int == 1, "rolled back at the first step: \(failed)")
        let verdict = Self.failedVerdict(ended)
        #expect((verdict["failedChecks"] as? [String]) == ["new-signatures"], "\(verdict)")

        let start = try #require(answers.first { $0.body == "v2" || $0.status == 500 }?.at)
        let firstError = try #require(answers.first { $0.status == 500 }?.at)
        let lastCandidate = answers.last { $0.body == "v2" || $0.status == 500 }?.at ?? firstError
        let decidedAt = ((failed["time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }?.timeIntervalSince1970 ?? 0)
            - traffic.started.timeIntervalSince1970
        let candidate = answers.filter { $0.body == "v2" || $0.status == 500 }.count
        let during = answers.filter { $0.at >= start && $0.at <= lastCandidate }.count
        print("""
            deployment \(id) (new signature, 5% of the candidate's requests failing, 200 req/s): \
            first candidate answer at \(String(format: "%.2f", start)) s, first error at \(String(format: "%.2f", firstError)) s, \
            the gate decided at \(String(format: "%.0f", decidedAt)) s (its record keeps whole seconds), \
            the API showed it rolled back at \(String(format: "%.2f", seenAt)) s (polled every 0.1 s): \
            \(String(format: "%.2f", seenAt - firstError)) s after the first error (goal ≤ 5 s); \
            the last candidate answer was at \(String(format: "%.2f", lastCandidate)) s; \
            the candidate answered \(candidate) of \(during) requests in that time (\(String(format: "%.2f", Double(candidate) / Double(max(during, 1)) * 100))%; goal ≤ 1%), \
            \(answers.filter { $0.status == 500 }.count) errors in all
            """)
        // Every request after the rollback reached the workers is answered by version 1.
        let after = answers.filter { $0.at > lastCandidate }
        #expect(after.allSatisfy { $0.status == 200 && $0.body == "v1" })
        #expect(!after.isEmpty)
        let logs = try host.api("GET", "/v1/scripts/app/logs", token: token)
        #expect(logs.body.contains("deployment \(id)") && logs.body.contains("failed"), "the decision is in the script's log: \(logs.body)")
    }

    /// The gate passes a step once it has its minimum of requests and nothing failed,
    /// so a step needs enough requests for the test to see a tenfold rate: this
    /// deployment asks for 300 a step (its own gate, tighter than the cohort's 20).
    @Test func theOldVersionsOwnErrorAtTenTimesItsRateIsRolledBackByTheRateTest() throws {
        let (host, token, port) = try start("""
            function handle(req)
              if math.random() < 0.005 then error("backend timeout") end
              return "v1"
            end
            """)
        defer { host.stop() }
        let traffic = KeyedTraffic(port: port, host: "app.acme.localhost", users: 100_000, rate: 400)
        // The old version shows its error before the deployment begins.
        let seen = waitFor(timeout: 30, interval: 0.1) { traffic.recorded.contains { $0.status == 500 } }
        #expect(seen != nil)
        let began = Date()
        let id = try deploy(host, token: token, """
            function handle(req)
              if math.random() < 0.05 then error("backend timeout") end
              return "v2"
            end
            """, body: #"{"version": VERSION, "key_header": "x-user", "steps": [5, 25, 50, 100], "gate": {"min_requests": 300}}"#)
        let ended = try waitForState(host, token: token, id, ["rolled-back", "completed", "paused"], timeout: 180)
        _ = traffic.stop()
        #expect(ended["state"] as? String == "rolled-back", "\(ended)")
        let verdict = Self.failedVerdict(ended)
        let decisions = ended["decisions"] as? [[String: Any]] ?? []
        let failed = decisions.last { $0["event"] as? String == "failed" } ?? [:]
        #expect((verdict["failedChecks"] as? [String]) == ["script-error-rate-increase"], "the rate test alone: \(verdict)")
        let script = verdict["scriptErrors"] as? [String: Any] ?? [:]
        let test = script["test"] as? [String: Any] ?? [:]
        print("""
            deployment \(id) (the old version's error, 0.5% → 5%, 400 req/s): rolled back at step \(failed["step"] as? Int ?? -1) \
            (\(failed["percent"] ?? "?")%) after \(String(format: "%.1f", Date().timeIntervalSince(began))) s; \
            candidate \(script["stageCount"] ?? "?") errors in \(script["stageTotal"] ?? "?") requests, \
            old version \(script["baselineCount"] ?? "?") in \(script["baselineTotal"] ?? "?"); \
            p-value \(test["pValue"] ?? "?") (\(test["method"] ?? "?")), new signatures: \(verdict["newSignatures"] ?? "?")
            """)
    }

    @Test func aGoodVersionWalksEveryStepNoUserGoesBackAndItResumesAfterControlIsKilled() throws {
        let (host, token, port) = try start(#"function handle(req) return "v1" end"#)
        defer { host.stop() }
        let traffic = KeyedTraffic(port: port, host: "app.acme.localhost", users: 400, rate: 400)
        let id = try deploy(host, token: token, #"function handle(req) return "v2" end"#,
                            body: #"{"version": VERSION, "key_header": "x-user", "gate": {"bake_seconds": 3}}"#)
        // Mid-step: the second step (10%) is under way.
        _ = try waitForState(host, token: token, id, ["running"], timeout: 10)
        let atSecond = waitFor(timeout: 60, interval: 0.05) { ((try? deployment(host, token: token, id))?["step"] as? Int ?? 0) >= 2 }
        #expect(atSecond != nil)
        let before = try deployment(host, token: token, id)
        let killed = try #require(host.controlPID())
        #expect(kill(killed, SIGKILL) == 0)
        let restarted = waitFor(timeout: 30, interval: 0.1) {
            guard let pid = host.controlPID(), pid != killed else { return false }
            return (try? host.api("GET", "/healthz", token: nil))?.status == 200
        }
        #expect(restarted != nil, "serve restarts control")
        let after = try deployment(host, token: token, id)
        print("control killed at step \(before["step"] ?? "?") (\(before["percent"] ?? "?")%, \(before["state"] ?? "?")); "
              + "after its restart: step \(after["step"] ?? "?") (\(after["percent"] ?? "?")%, \(after["state"] ?? "?"))")
        #expect((after["step"] as? Int ?? 0) >= (before["step"] as? Int ?? 99), "it resumes where it stood")
        #expect(["running", "completed"].contains(after["state"] as? String ?? ""))

        let ended = try waitForState(host, token: token, id, ["completed", "rolled-back", "paused"], timeout: 120)
        usleep(500_000)
        let answers = traffic.stop()
        #expect(ended["state"] as? String == "completed", "\(ended)")
        let passed = (ended["decisions"] as? [[String: Any]] ?? []).filter { $0["event"] as? String == "passed" }.compactMap { $0["percent"] as? Double }
        #expect(passed == [1, 10, 50, 100], "every step passed its gate")

        // Over all requests: each user's answers go v1… then v2…, never back.
        var onCandidate: [Int: Double] = [:]
        var wentBack: [(user: Int, at: Double)] = []
        for answer in answers where answer.status == 200 {
            if answer.body == "v2" {
                onCandidate[answer.user] = onCandidate[answer.user] ?? answer.at
            } else if answer.body == "v1", onCandidate[answer.user] != nil {
                wentBack.append((answer.user, answer.at))
            }
        }
        let failures = answers.filter { $0.status != 200 }.count
        print("\(answers.count) requests from 400 users; \(onCandidate.count) users moved to version 2, \(wentBack.count) answers went back, \(failures) failed")
        #expect(wentBack.isEmpty, "no user goes back from the candidate: \(wentBack.prefix(5))")
        #expect(failures == 0)
        #expect(answers.suffix(100).allSatisfy { $0.body == "v2" })
        let script = try host.api("GET", "/v1/scripts/app", token: token)
        #expect(script.body.contains("\"active_version\":2") || script.body.contains("\"activeVersion\":2"), "\(script.body)")
    }
}
