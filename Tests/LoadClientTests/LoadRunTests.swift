#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
@testable import LoadClient

/// Runs the load client against `TestHTTPServer`s that answer, fail and hang on
/// purpose, and checks that every request is counted under the right outcome.
///
/// Serialized: each test starts threads of its own, and on two cores the timing
/// checks (duration bound, pacing, timeline) are only fair one at a time.
@Suite("LoadRun against a local server", .serialized)
struct LoadRunTests {
    private static let okReply = TestReply.respond(
        status: 200,
        headers: ["x-bulkhead-pool": "free", "x-bulkhead-worker": "4242"],
        body: "hello from free"
    )

    /// Every count must add up, whatever happened.
    private func expectConsistent(_ target: TargetReport, sourceLocation: SourceLocation = #_sourceLocation) {
        let statuses = target.statuses.reduce(0) { $0 + $1.count }
        #expect(target.inFlight == 0, sourceLocation: sourceLocation)
        #expect(target.attempts == target.ok + statuses + target.failures.total, sourceLocation: sourceLocation)
        #expect(target.completed == target.ok + statuses + target.failures.mismatch, sourceLocation: sourceLocation)
        #expect(target.sent == target.attempts - target.failures.connect, sourceLocation: sourceLocation)
        #expect(target.timeline.reduce(0) { $0 + $1.ok } == target.ok, sourceLocation: sourceLocation)
        #expect(target.timeline.reduce(0) { $0 + $1.failed } == target.failed, sourceLocation: sourceLocation)
        #expect(target.latency.count == target.completed, sourceLocation: sourceLocation)
    }

    @Test("ok responses are counted, with workers, pools and latency")
    func countsOK() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let target = LoadTarget(
            label: "free", port: server.port, hostHeader: "hello.demo-free.localhost",
            expectedBodySubstring: "hello", expectedPool: "free"
        )
        let run = try LoadRun.start(LoadConfiguration(targets: [target], connectionsPerTarget: 2, stop: .requests(200)))
        let report = await run.finished()

        #expect(report.finished)
        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.attempts == 200)
        #expect(free.ok == 200)
        #expect(free.failed == 0)
        #expect(free.workers == ["4242": 200])
        #expect(free.pools == ["free": 200])
        // Keep-alive: one connection each, reused for every request.
        #expect(free.connectionsOpened == 2)
        #expect(free.latency.p50Milliseconds != nil)
        #expect(server.requestsServed == 200)
        #expect(free.summary(elapsedSeconds: report.elapsedSeconds).contains("ok 200"))
    }

    @Test("a response cut short or reset is eof or reset, never ok")
    func closedMidResponse() async throws {
        // Requests go round: a good response, half a response then FIN, an RST.
        let server = try TestHTTPServer { number in
            switch number % 3 {
            case 1: Self.okReply
            case 2: .rawThenClose("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nx-bulkhead-pool: free\r\n\r\nonly part")
            default: .reset
            }
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)], connectionsPerTarget: 1, stop: .requests(90)
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.attempts == 90)
        #expect(free.ok == 30)
        #expect(free.failures.eof == 30)
        #expect(free.failures.reset == 30)
        #expect(free.completed == 30)
        // Each failure costs its connection and the next request opens a new one:
        // the first connection plus one after each failure but the last (request 90).
        #expect(free.connectionsOpened == 60)
        #expect(free.failureDetails.keys.contains { $0.hasPrefix("eof: closed after") })
    }

    @Test("a 503 with x-bulkhead-error is counted under 503 and its kind")
    func statusWithErrorKind() async throws {
        let server = try TestHTTPServer { number in
            number <= 40
                ? .respond(status: 503, headers: ["x-bulkhead-error": "limit-cpu", "content-type": "application/json"],
                           body: #"{"error": "limit-cpu"}"#)
                : .respond(status: 404, body: "no")
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)], stop: .requests(50)
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.count(status: 503) == 40)
        #expect(free.count(status: 503, errorKind: "limit-cpu") == 40)
        #expect(free.count(status: 404) == 10)
        #expect(free.statuses.map(\.status) == [404, 503])
        #expect(free.ok == 0)
        #expect(free.failures.total == 0)
        #expect(free.failed == 50)
        // A 503 is a complete response: the connection is kept.
        #expect(free.connectionsOpened == 1)
        #expect(report.summary.contains("503 ×40 [limit-cpu 40]"))
    }

    @Test("2xx that fails the body or pool expectation is a mismatch")
    func mismatch() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [
                LoadTarget(label: "pool", port: server.port, expectedPool: "pro"),
                LoadTarget(label: "body", port: server.port, expectedBodySubstring: "goodbye"),
                LoadTarget(label: "both-ok", port: server.port, expectedBodySubstring: "from free", expectedPool: "free"),
            ],
            // A duration, not a request count: with a shared count one target can
            // finish the budget before another's first request on a busy machine.
            stop: .duration(.milliseconds(400))
        )).finished()

        for label in ["pool", "body", "both-ok"] {
            expectConsistent(try #require(report[label]))
        }
        let pool = try #require(report["pool"])
        #expect(pool.failures.mismatch == pool.attempts)
        #expect(pool.failureDetails.keys.contains("mismatch: x-bulkhead-pool 'free', expected 'pro'"))
        let body = try #require(report["body"])
        #expect(body.failures.mismatch == body.attempts)
        let both = try #require(report["both-ok"])
        #expect(both.ok == both.attempts)
        #expect(report.targets.allSatisfy { $0.attempts > 0 }, "every target ran")
    }

    @Test("chunked responses are read whole; garbage is a bad-response")
    func chunkedAndGarbage() async throws {
        let server = try TestHTTPServer { number in
            number % 2 == 1
                ? .raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6;x=y\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
                : .raw("HTTP/1.1 two hundred\r\n\r\n")
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port, expectedBodySubstring: "hello world")],
            stop: .requests(20)
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.ok == 10)
        #expect(free.failures.badResponse == 10)
    }

    @Test("a closed port counts connect failures and sends nothing")
    func connectRefused() async throws {
        let port = try unusedPort()
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "down", port: port)],
            connectionsPerTarget: 2,
            stop: .requests(6),
            reconnectDelay: .milliseconds(1)
        )).finished()

        let down = try #require(report["down"])
        expectConsistent(down)
        #expect(down.failures.connect == 6)
        #expect(down.sent == 0)
        #expect(down.connectionsOpened == 0)
    }

    @Test("a server that never answers costs the read timeout, counted as timeout")
    func timeout() async throws {
        let server = try TestHTTPServer { _ in .hang }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            stop: .requests(2),
            readTimeout: .milliseconds(150)
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.failures.timeout == 2)
        #expect(report.elapsedSeconds >= 0.3)
    }

    @Test("a server closing idle kept-alive connections loses no request")
    func idleClose() async throws {
        // A complete keep-alive response, then the server closes: the client sees
        // the close before its next request and reconnects without a failure.
        let server = try TestHTTPServer { _ in
            .rawThenClose("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            stop: .requests(5),
            ratePerConnection: 40
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.ok == 5)
        #expect(free.idleClosed == 4)
        #expect(free.connectionsOpened == 5)
    }

    @Test("Connection: close responses are ok and reconnect")
    func connectionClose() async throws {
        let server = try TestHTTPServer { _ in
            .rawThenClose("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)], stop: .requests(10)
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.ok == 10)
        #expect(free.connectionsOpened == 10)
        #expect(free.idleClosed == 0)
    }

    @Test("a server that goes away mid-run: failures from then on, each counted once")
    func serverGoesAway() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let run = try LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port, expectedPool: "free")],
            connectionsPerTarget: 2,
            stop: .duration(.seconds(60)),
            ratePerConnection: 50,
            reconnectDelay: .milliseconds(5)
        ))
        try await Task.sleep(for: .milliseconds(300))
        server.stop()
        let served = server.requestsServed
        try await Task.sleep(for: .milliseconds(300))
        run.requestStop()
        let report = await run.finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.ok > 0)
        #expect(free.ok <= served)
        #expect(free.failures.connect > 0)
        #expect(free.failed == free.failures.total)
        let firstFailure = try #require(free.firstFailureSeconds)
        #expect(firstFailure >= 0.2)
        #expect(free.recoveredSeconds == nil)
    }

    @Test("the run stops at its request bound exactly")
    func requestBound() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "a", port: server.port), LoadTarget(label: "b", port: server.port)],
            connectionsPerTarget: 3,
            stop: .first(duration: .seconds(30), requests: 37)
        )).finished()

        #expect(report.attempts == 37)
        #expect(report.ok == 37)
        #expect(server.requestsServed == 37)
        #expect(report.elapsedSeconds < 10)
    }

    @Test("the run stops at its duration bound")
    func durationBound() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            connectionsPerTarget: 2,
            stop: .duration(.milliseconds(400)),
            ratePerConnection: 25
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(report.elapsedSeconds >= 0.4)
        #expect(report.elapsedSeconds < 2.4)
        // Paced at 25/s from t = 0: at most 10 starts per connection in 0.4 s.
        #expect(free.attempts <= 20)
        #expect(free.attempts >= 2)
        #expect(free.ok == free.attempts)
    }

    @Test("stop() mid-run returns a consistent final report and sends nothing more")
    func stopMidRun() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let run = try LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port), LoadTarget(label: "pro", port: server.port)],
            connectionsPerTarget: 2,
            stop: .duration(.seconds(60)),
            ratePerConnection: 100
        ))
        try await Task.sleep(for: .milliseconds(300))
        let live = run.snapshot()
        #expect(!live.finished)
        #expect(live.attempts > 0)

        run.requestStop()
        let report = await run.finished()
        #expect(report.finished)
        #expect(run.isFinished)
        #expect(report.elapsedSeconds < 5)
        #expect(report.attempts >= live.attempts)
        for target in report.targets {
            expectConsistent(target)
            #expect(target.ok == target.attempts)
        }
        let served = server.requestsServed
        #expect(served == report.attempts)
        try await Task.sleep(for: .milliseconds(100))
        #expect(server.requestsServed == served)
        // Once finished, a snapshot is the final report.
        #expect(run.snapshot() == report)
    }

    @Test("stop() while requests hang waits for them and counts them as timeouts")
    func stopWhileHanging() async throws {
        let server = try TestHTTPServer { _ in .hang }
        defer { server.stop() }
        let run = try LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            connectionsPerTarget: 2,
            stop: .duration(.seconds(60)),
            readTimeout: .milliseconds(300)
        ))
        try await Task.sleep(for: .milliseconds(100))
        #expect(run.snapshot().targets.first?.inFlight == 2)
        run.requestStop()
        let report = await run.finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.attempts == 2)
        #expect(free.failures.timeout == 2)
    }

    @Test("rate limit paces each connection")
    func rateLimit() async throws {
        let server = try TestHTTPServer { _ in Self.okReply }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            stop: .duration(.milliseconds(500)),
            ratePerConnection: 20
        )).finished()

        // Starts at 0, 50, …, 450 ms: 10, fewer only on a very busy machine.
        let attempts = try #require(report["free"]).attempts
        #expect(attempts <= 10)
        #expect(attempts >= 5)
    }

    @Test("the timeline shows when failures happened and when service came back")
    func timeline() async throws {
        // Fails from 300 ms to 600 ms after the server starts, ok otherwise.
        let started = ContinuousClock.now
        let server = try TestHTTPServer { _ in
            let elapsed = ContinuousClock.now - started
            return elapsed >= .milliseconds(300) && elapsed < .milliseconds(600)
                ? .respond(status: 503, headers: ["x-bulkhead-error": "quarantined"])
                : Self.okReply
        }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)],
            connectionsPerTarget: 2,
            stop: .duration(.milliseconds(1000)),
            ratePerConnection: 50
        )).finished()

        let free = try #require(report["free"])
        expectConsistent(free)
        #expect(free.timelineBucketMilliseconds == 100)
        #expect(free.timeline.count >= 10)
        let first = try #require(free.firstFailureSeconds)
        let last = try #require(free.lastFailureSeconds)
        let recovered = try #require(free.recoveredSeconds)
        #expect(first >= 0.2 && first <= 0.5)
        #expect(last >= 0.5 && last <= 0.9)
        #expect(recovered >= last && recovered <= 1.0)
        #expect(free.count(status: 503, errorKind: "quarantined") == free.failed)
        #expect(report.summary.contains("ok again from"))
    }

    @Test("the report round-trips through JSON")
    func json() async throws {
        let server = try TestHTTPServer { number in number % 4 == 0 ? .reset : Self.okReply }
        defer { server.stop() }
        let report = try await LoadRun.start(LoadConfiguration(
            targets: [LoadTarget(label: "free", port: server.port)], stop: .requests(20)
        )).finished()

        let data = try JSONEncoder().encode(report)
        #expect(try JSONDecoder().decode(LoadReport.self, from: data) == report)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""bad-response":0"#))
        #expect(text.contains(#""reset":5"#))
    }

    @Test("a configuration that cannot run is refused before any thread starts")
    func refusesBadConfiguration() {
        #expect(throws: LoadConfigurationError.noTargets) {
            try LoadRun.start(LoadConfiguration(targets: [], stop: .requests(1)))
        }
        #expect(throws: LoadConfigurationError.self) {
            try LoadRun.start(LoadConfiguration(targets: [LoadTarget(label: "x", port: 1)], connectionsPerTarget: 0, stop: .requests(1)))
        }
    }
}
