import Foundation
import Ingress
import Testing

/// Requests through a live ingress to fake pools, over real sockets.
@Suite("Routing and relaying")
struct RoutingTests {
    /// Two pools and an ingress routing `acme` to pro and `demo-free` to free.
    final class Setup: Sendable {
        let free: FakePool
        let pro: FakePool
        let ingress: IngressHarness

        init(configure: (inout IngressOptions) -> Void = { _ in }) throws {
            free = try FakePool(name: "free")
            pro = try FakePool(name: "pro")
            ingress = try IngressHarness(
                routes: Routes(version: 1, pools: ["free": free.port, "pro": pro.port],
                               customers: ["acme": "pro", "demo-free": "free"]),
                configure: configure)
        }

        func stop() {
            ingress.stop()
            free.stop()
            pro.stop()
        }
    }

    @Test("the Host SCRIPT.CUSTOMER.localhost routes to the customer's pool, head forwarded as sent")
    func routeByHost() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let response = try TestClient.get(port: setup.ingress.port, host: "hello.acme.localhost:8100", path: "/a/b?x=1")
        #expect(response.status == 200)
        #expect(response.header("x-bulkhead-pool") == "pro")
        #expect(response.header("x-upstream-path") == "/a/b")
        let forwarded = response.text
        #expect(forwarded.hasPrefix("GET /a/b?x=1 HTTP/1.1\r\n"))
        #expect(forwarded.contains("Host: hello.acme.localhost:8100\r\n"))
        #expect(forwarded.contains("x-forwarded-for: 127.0.0.1\r\n"))
        // The client's Connection: close is its own hop's business.
        #expect(!forwarded.lowercased().contains("connection:"))
        #expect(response.header("connection") == "close")
    }

    @Test("the path /CUSTOMER/SCRIPT/… routes when the Host names nothing")
    func routeByPath() throws {
        let setup = try Setup()
        defer { setup.stop() }
        for host in ["127.0.0.1:\(setup.ingress.port)", "localhost"] {
            let response = try TestClient.get(port: setup.ingress.port, host: host, path: "/demo-free/hello/rest?q=2")
            #expect(response.status == 200)
            #expect(response.header("x-bulkhead-pool") == "free")
            #expect(response.text.hasPrefix("GET /demo-free/hello/rest?q=2 HTTP/1.1\r\n"))
        }
    }

    @Test("a Content-Length body arrives upstream intact, binary included")
    func contentLengthBody() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let body = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("POST /x HTTP/1.1\r\nHost: up.acme.localhost\r\nContent-Length: \(body.count)\r\n\r\n")
        try client.send(body)
        let response = try client.readResponse()
        #expect(response.status == 200)
        let forwarded = response.body
        let head = try #require(headEnd(forwarded))
        let headText = String(decoding: forwarded[0..<head], as: UTF8.self)
        #expect(headText.hasPrefix("POST /x HTTP/1.1\r\n"))
        #expect(headText.contains("content-length: \(body.count)\r\n"))
        #expect(Array(forwarded[head...]) == body)
    }

    @Test("a chunked body is decoded and forwarded with a Content-Length")
    func chunkedBody() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("POST /c HTTP/1.1\r\nHost: up.acme.localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        try client.send("5\r\nhello\r\n")
        try client.send("7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        let text = response.text
        #expect(text.hasPrefix("POST /c HTTP/1.1\r\n"))
        #expect(text.contains("content-length: 12\r\n"))
        #expect(!text.lowercased().contains("transfer-encoding"))
        #expect(text.hasSuffix("\r\n\r\nhello, world"))
    }

    @Test("hop-by-hop headers are dropped; end-to-end ones go through in order")
    func hopByHop() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send(
            "GET /h HTTP/1.1\r\nHost: up.acme.localhost\r\nConnection: keep-alive, x-custom\r\nKeep-Alive: timeout=5\r\n"
                + "X-One: 1\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nX-Two: 2\r\n\r\n")
        let response = try client.readResponse()
        let text = response.text.lowercased()
        for dropped in ["connection:", "keep-alive:", "te:", "upgrade:", "proxy-connection:"] {
            #expect(!text.contains("\r\n" + dropped), "\(dropped) was forwarded")
        }
        #expect(text.contains("x-one: 1\r\nx-two: 2\r\n"))
        #expect(response.header("connection") == nil)
    }

    @Test("HTTP/1.0 without Host goes upstream as HTTP/1.1 with a Host; keep-alive is honoured")
    func http10() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /demo-free/s/one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let first = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.header("x-bulkhead-pool") == "free")
        #expect(first.header("connection") == "keep-alive")
        #expect(first.text.hasPrefix("GET /demo-free/s/one HTTP/1.1\r\nhost: 127.0.0.1\r\n"))
        try client.send("GET /demo-free/s/two HTTP/1.0\r\n\r\n")
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.header("connection") == "close")
        #expect(client.waitForClose())
    }

    @Test("HEAD gets the head only, and the connection goes on")
    func head() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("HEAD /h HTTP/1.1\r\nHost: up.acme.localhost\r\n\r\n")
        let first = try client.readResponse(head: true)
        #expect(first.status == 200)
        #expect(first.header("content-length") != nil)
        try client.send("GET /g HTTP/1.1\r\nHost: up.acme.localhost\r\n\r\n")
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.text.hasPrefix("GET /g HTTP/1.1"))
    }

    @Test("pipelined requests are answered in order")
    func pipelined() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send(
            "GET /1 HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\nGET /demo-free/a/2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + "GET /3 HTTP/1.1\r\nHost: a.nobody.localhost\r\n\r\nGET /4 HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        let responses = try (0..<4).map { _ in try client.readResponse() }
        #expect(responses.map(\.status) == [200, 200, 404, 200])
        #expect(responses.map { $0.header("x-bulkhead-pool") } == ["pro", "free", "ingress", "pro"])
        #expect(responses[3].text.hasPrefix("GET /4 "))
    }

    @Test("a response body is relayed as it arrives, not when it is whole")
    func streaming() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /slow-body HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        // The pool sends 1000 bytes, then 1000 more a second later.
        let (head, early) = try client.readHeadAndSome(milliseconds: 300)
        #expect(head.status == 200)
        #expect(early == 1000)
    }

    @Test("a body ended by the pool's close reaches the client, which is then closed")
    func untilClose() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /no-length HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(response.text.hasPrefix("GET /no-length HTTP/1.1"))
        #expect(setup.ingress.server.stats().brokenResponses == 0)
    }

    @Test("a pool's connection: close ends that upstream connection, not the client's")
    func upstreamClose() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        for path in ["/close", "/after", "/close", "/after"] {
            try client.send("GET \(path) HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.header("connection") == nil)
        }
        #expect(setup.pro.connectionsAccepted == 3)
    }

    private func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index + 4
        }
        return nil
    }
}
