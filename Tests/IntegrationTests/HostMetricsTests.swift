#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// The host's own `/metrics` and `/healthz` (`serve --metrics`), apart from the
/// control API: real `bulkhead serve`, real workers, real sockets.
@Suite(.serialized) struct HostMetricsTests {
    /// The port `status --json` says the host's metrics listen on.
    func metricsPort(_ host: HostHarness) throws -> Int {
        let address = try #require(try host.status().metrics, "status --json shows where the host's metrics listen")
        return try #require(Int(address.split(separator: ":").last ?? ""), "\(address)")
    }

    /// The API held at its connection cap (plus idle connections past it, re-opened
    /// as soon as they are closed) takes nothing from the host's endpoint.
    @Test func hostMetricsAnswerWhileTheAPIIsHeldAtItsConnectionCap() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        host.serveArguments = ["--api-max-connections", "32", "--api-max-connections-per-peer", "32"]
        try host.start()
        let metricsPort = try metricsPort(host)
        let apiPort = try host.apiPort()
        #expect(metricsPort != apiPort)
        let run = try host.steadyLoad(pools: ["free"], connections: 2, rate: 20, seconds: 30)
        defer { _ = run.stop() }

        let flood = IdleFlood(port: apiPort, connections: 32 + 300, sources: (2...5).map { "127.0.0.\($0)" })
        flood.start()
        usleep(1_500_000)
        var metricsTimes: [Double] = []
        var healthTimes: [Double] = []
        var metricsBody = ""
        var healthStatuses: [Int] = []
        var metricsStatuses: [Int] = []
        for _ in 0..<10 {
            let start = Date()
            let metrics = httpRequest(port: metricsPort, path: "/metrics", timeout: 5)
            metricsTimes.append(Date().timeIntervalSince(start))
            metricsStatuses.append(metrics?.status ?? 0)
            metricsBody = metrics?.body ?? metricsBody
            let healthStart = Date()
            let health = httpRequest(port: metricsPort, path: "/healthz", timeout: 5)
            healthTimes.append(Date().timeIntervalSince(healthStart))
            healthStatuses.append(health?.status ?? 0)
            usleep(100_000)
        }
        let stats = flood.stop()
        print("API flood: \(stats.connects) connects, \(stats.closedByServer) closed by the API")
        print("host /metrics during the flood: max \(String(format: "%.1f", (metricsTimes.max() ?? 0) * 1000)) ms, "
            + "/healthz max \(String(format: "%.1f", (healthTimes.max() ?? 0) * 1000)) ms")
        #expect(stats.closedByServer > 0 || stats.connects >= 32, "the API was held at its cap: \(stats.connects) connects")
        #expect(metricsStatuses.allSatisfy { $0 == 200 }, "\(metricsStatuses)")
        #expect(healthStatuses.allSatisfy { $0 == 200 }, "\(healthStatuses)")
        #expect(metricsBody.contains("bulkhead_requests_total{pool=\"free\"}"), "the host's metrics count its pools")
        #expect(metricsBody.contains("bulkhead_workers_up{pool=\"enterprise\"} 2"))
        #expect((metricsTimes + healthTimes).allSatisfy { $0 < 2 }, "each answer within 2 s (expected: milliseconds)")
        let report = run.stop()
        #expect(report["free"]?.failed == 0)
    }

    /// `/healthz` is 503 naming a pool with no ready worker (its workers exit at
    /// once: fault injection), 200 for the rest; `/metrics` shows the pool at 0.
    @Test func healthzNamesAPoolWithNoReadyWorker() throws {
        let host = try HostHarness(pools: [
            HostHarness.Pool(name: "free", order: 1), HostHarness.Pool(name: "crashy", order: 2, workers: 1),
        ])
        for pool in ["free", "crashy"] {
            try host.assign(customer: "c-\(pool)", to: pool)
            try host.writeScript(customer: "c-\(pool)", name: "echo", source: HostHarness.echoScript)
        }
        host.environment["BULKHEAD_FAULT_EXIT_POOL"] = "crashy"
        defer { host.stop() }
        try host.start(waitForReady: false)
        try host.waitUntilReady(excluding: ["crashy"])
        let port = try metricsPort(host)
        let health = try #require(httpRequest(port: port, path: "/healthz"), "the host's /healthz answers")
        print("/healthz: \(health.status) \(health.body)")
        #expect(health.status == 503)
        let body = try JSONSerialization.jsonObject(with: Data(health.body.utf8)) as? [String: Any]
        #expect(body?["unready"] as? [String] == ["crashy"], "it names the pool with no ready worker, only it")
        #expect(body?["status"] as? String == "unavailable")
        let pools = body?["pools"] as? [[String: Any]] ?? []
        #expect(pools.first { $0["name"] as? String == "free" }?["ready"] as? Int == 2)
        let metrics = try #require(httpRequest(port: port, path: "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("bulkhead_workers_up{pool=\"crashy\"} 0"), "\(metrics.body.prefix(400))")
        #expect(httpRequest(port: port, path: "/v1/admin/status")?.status == 404, "the host's endpoint serves no API route")
    }

    /// `--metrics off` serves none, and status says so.
    @Test func metricsOffServesNone() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1, canaryWorkers: 0)])
        defer { host.stop() }
        host.serveArguments = ["--metrics", "off"]
        try host.start()
        #expect(try host.status().metrics == nil)
        #expect(host.supervisorOutput().contains("host metrics listening") == false)
    }
}
