import Foundation
import Ingress
import Synchronization
import Testing

/// Upstream connection reuse, retries and the ingress's own error answers.
@Suite("Upstream connections and errors")
struct PoolingTests {
    typealias Setup = RoutingTests.Setup

    @Test("keep-alive: upstream connections are reused across requests and clients")
    func reuse() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        for index in 0..<20 {
            try client.send("GET /\(index) HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
        for index in 0..<10 {
            let response = try TestClient.get(port: setup.ingress.port, host: "a.acme.localhost", path: "/c\(index)")
            #expect(response.status == 200)
        }
        #expect(setup.pro.requests == 30)
        #expect(setup.pro.connectionsAccepted == 1)
        let stats = setup.ingress.server.stats()
        #expect(stats.upstreamConnectionsOpened == 1)
        #expect(stats.upstreamConnectionsReused == 29)
        #expect(stats.responses == 30)
        #expect(stats.failures == 0)
    }

    @Test("concurrent clients open more upstream connections, fewer than requests")
    func concurrency() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let port = setup.ingress.port
        // Threads of their own, so the eight clients really are concurrent.
        let results = Mutex<[Int]>([])
        let done = DispatchGroup()
        for worker in 0..<8 {
            done.enter()
            Thread {
                defer { done.leave() }
                var statuses: [Int] = []
                do {
                    let client = try TestClient(port: port)
                    for index in 0..<25 {
                        try client.send("GET /\(worker)/\(index) HTTP/1.1\r\nHost: a.demo-free.localhost\r\n\r\n")
                        let response = try client.readResponse()
                        let echoed = response.text.hasPrefix("GET /\(worker)/\(index) ")
                        statuses.append(echoed ? response.status : -1)
                    }
                } catch {
                    statuses.append(-2)
                }
                results.withLock { $0 += statuses }
            }.start()
        }
        #expect(done.wait(timeout: .now() + 30) == .success)
        let statuses = results.withLock { $0 }
        #expect(statuses.count == 200)
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect(setup.free.connectionsAccepted >= 1)
        #expect(setup.free.connectionsAccepted <= 8)
        #expect(setup.ingress.server.stats().upstreamConnectionsOpened == setup.free.connectionsAccepted)
    }

    @Test("an unknown customer, or none, gets 404 no-script from the ingress")
    func unknownCustomer() throws {
        let setup = try Setup()
        defer { setup.stop() }
        for (host, path) in [("a.nobody.localhost", "/"), ("localhost", "/"), ("localhost", "/nobody/script/x")] {
            let response = try TestClient.get(port: setup.ingress.port, host: host, path: path)
            #expect(response.status == 404)
            #expect(response.header("x-bulkhead-error") == "no-script")
            #expect(response.header("content-type") == "application/json")
            #expect(response.header("x-bulkhead-pool") == "ingress")
            #expect(response.json["error"] == "no-script")
            #expect(response.json["message"]?.isEmpty == false)
            #expect(response.json["request_id"]?.hasPrefix("ingress-") == true)
        }
        #expect(setup.free.requests + setup.pro.requests == 0)
        #expect(setup.ingress.server.stats().unknownCustomers == 3)
    }

    @Test("a malformed request gets the workers' 400 bad-request shape, then the close")
    func badRequest() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /x HTTP/1.1\r\nHost: a.acme.localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 400)
        #expect(response.header("x-bulkhead-error") == "bad-request")
        #expect(response.json["error"] == "bad-request")
        #expect(response.header("connection") == "close")
        #expect(client.waitForClose())
    }

    @Test("a body over the ingress's limit gets 413 too-large")
    func tooLarge() throws {
        let setup = try Setup { $0.parserLimits.maxBodyBytes = 1000 }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("POST /x HTTP/1.1\r\nHost: a.acme.localhost\r\nContent-Length: 1001\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(response.header("x-bulkhead-error") == "too-large")
    }

    @Test("a body over the limit of the customer's pool gets 413 from its head; a larger pool's customer is served")
    func poolBodyLimit() throws {
        let free = try FakePool(name: "free")
        let pro = try FakePool(name: "pro")
        let ingress = try IngressHarness(routes: Routes(
            version: 1, pools: ["free": free.port, "pro": pro.port], customers: ["acme": "pro", "demo-free": "free"],
            maxBodyBytes: ["free": 1000, "pro": 100_000]))
        defer {
            ingress.stop()
            free.stop()
            pro.stop()
        }
        // The head alone: the 413 comes without any body byte sent.
        let client = try TestClient(port: ingress.port)
        try client.send("POST /x HTTP/1.1\r\nHost: a.demo-free.localhost\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413, "no 100 Continue for a body that will be refused")
        #expect(response.header("x-bulkhead-error") == "too-large")
        #expect(response.header("x-bulkhead-pool") == "ingress")
        #expect(response.json["message"]?.contains("pool 'free' takes at most 1000") == true, "\(response.json)")
        #expect(response.header("connection") == "close")
        #expect(client.waitForClose())

        // A chunked body is counted as it arrives: 1000 bytes fit, the next chunk size
        // crosses the limit and is refused before its data.
        let chunked = try TestClient(port: ingress.port)
        try chunked.send("POST /x HTTP/1.1\r\nHost: a.demo-free.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
            + String(repeating: "c", count: 1000) + "\r\n1\r\n")
        let refused = try chunked.readResponse()
        #expect(refused.status == 413)
        #expect(refused.json["message"]?.contains("limit of pool 'free'") == true, "\(refused.json)")
        #expect(chunked.waitForClose())

        // The same body goes through for a customer of the larger pool.
        let served = try TestClient(port: ingress.port)
        try served.send("POST /x HTTP/1.1\r\nHost: a.acme.localhost\r\nContent-Length: 5000\r\n\r\n" + String(repeating: "b", count: 5000))
        #expect(try served.readResponse().header("x-bulkhead-pool") == "pro")
        #expect(free.requests == 0, "nothing over free's limit reached free")
        #expect(ingress.server.stats().badRequests == 2)
    }

    @Test("a pool that is down gets 502 bad-gateway, and the client's connection goes on")
    func upstreamDown() throws {
        let free = try FakePool(name: "free")
        let down = try closedPort()
        let ingress = try IngressHarness(
            routes: Routes(version: 1, pools: ["free": free.port, "pro": down], customers: ["acme": "pro", "demo-free": "free"]))
        defer {
            ingress.stop()
            free.stop()
        }
        let client = try TestClient(port: ingress.port)
        try client.send("GET /x HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 502)
        #expect(response.header("x-bulkhead-error") == "bad-gateway")
        #expect(response.json["error"] == "bad-gateway")
        #expect(response.json["message"]?.contains("127.0.0.1:\(down)") == true)
        try client.send("GET /y HTTP/1.1\r\nHost: a.demo-free.localhost\r\n\r\n")
        #expect(try client.readResponse().header("x-bulkhead-pool") == "free")
        #expect(ingress.server.stats().badGateways == 1)
    }

    @Test("a customer whose pool has no port gets 502 bad-gateway")
    func poolWithoutPort() throws {
        let ingress = try IngressHarness(routes: Routes(version: 1, pools: [:], customers: ["acme": "enterprise"]))
        defer { ingress.stop() }
        let response = try TestClient.get(port: ingress.port, host: "a.acme.localhost", path: "/")
        #expect(response.status == 502)
        #expect(response.json["message"]?.contains("enterprise") == true)
    }

    @Test("a reused connection the pool closes as the request arrives is retried on a fresh one",
          arguments: [FakePool.Behaviour.closeReused, .resetReused])
    func retryOnReusedConnection(_ behaviour: FakePool.Behaviour) throws {
        // A wide window: this is about the retry, not its timing on a loaded machine.
        let setup = try Setup { $0.retryWindow = .seconds(5) }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /first HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        // From now on every connection serves one request, and closes unanswered when
        // the next one arrives: each later request meets a closed idle connection.
        setup.pro.setBehaviour(behaviour)
        for index in 0..<5 {
            try client.send("POST /\(index) HTTP/1.1\r\nHost: a.acme.localhost\r\nContent-Length: 5\r\n\r\nhello")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.text.hasSuffix("\r\n\r\nhello"))
        }
        let stats = setup.ingress.server.stats()
        #expect(stats.retries == 5)
        #expect(stats.failures == 0)
        #expect(setup.pro.connectionsAccepted == 6)
    }

    @Test("idle connections the pool closed (a drained worker) are not used again")
    func poolClosedIdleConnections() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        for round in 0..<3 {
            try client.send("GET /\(round) HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
            #expect(try client.readResponse().status == 200)
            setup.pro.closeConnections()
            usleep(50_000)
        }
        let stats = setup.ingress.server.stats()
        #expect(stats.failures == 0)
        #expect(setup.pro.connectionsAccepted == 3)
    }

    @Test("a connection that closes unanswered is retried once at most, then answered 502")
    func retryOnce() throws {
        let setup = try Setup { $0.retryWindow = .seconds(5) }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /a HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        setup.pro.setBehaviour(.closeEvery)
        // On the reused connection, then once on a fresh one: two tries, then 502.
        try client.send("GET /b HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 502)
        #expect(response.header("x-bulkhead-error") == "bad-gateway")
        #expect(setup.pro.requests == 3)
        // A fresh connection that closes unanswered is not retried at all.
        try client.send("GET /c HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 502)
        #expect(setup.pro.requests == 4)
        let stats = setup.ingress.server.stats()
        #expect(stats.retries == 1)
        #expect(stats.badGateways == 2)
    }

    @Test("a reused connection that dies long after the request went out is not retried")
    func noRetryPastWindow() throws {
        let setup = try Setup { $0.retryWindow = .zero }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /a HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        setup.pro.setBehaviour(.closeReused)
        try client.send("GET /b HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 502)
        #expect(setup.ingress.server.stats().retries == 0)
    }
}
