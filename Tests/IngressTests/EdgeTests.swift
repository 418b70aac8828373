import Foundation
import Ingress
import Testing

/// Slow, silent, large and departing parties.
@Suite("Edges")
struct EdgeTests {
    typealias Setup = RoutingTests.Setup

    @Test("Expect: 100-continue gets its 100 from the ingress; the pool gets the body without Expect")
    func expectContinue() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("POST /e HTTP/1.1\r\nHost: a.acme.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        try client.send("data")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(!response.text.lowercased().contains("expect:"))
        #expect(response.text.hasSuffix("\r\n\r\ndata"))
    }

    @Test("a request that does not arrive in time gets 408 and the close")
    func arrivalTimeout() throws {
        let setup = try Setup { $0.requestArrivalTimeout = .milliseconds(200) }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET / HTTP/1.1\r\nHost: a.acme.loc")
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(response.header("x-bulkhead-error") == "bad-request")
        #expect(client.waitForClose())
    }

    @Test("a pool silent past the response timeout gets the client a 504")
    func responseTimeout() throws {
        let setup = try Setup { $0.upstreamResponseTimeout = .milliseconds(300) }
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /hang HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 504)
        #expect(response.header("x-bulkhead-error") == "gateway-timeout")
        // The client's connection goes on.
        try client.send("GET /after HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        #expect(setup.ingress.server.stats().gatewayTimeouts == 1)
    }

    @Test("a client that resets mid-request takes its upstream connection with it")
    func clientLeaves() throws {
        let setup = try Setup()
        defer { setup.stop() }
        do {
            // A FIN alone could be a half-close still waiting for its answer (see
            // halfClose); a reset says nobody is left.
            let client = try TestClient(port: setup.ingress.port)
            try client.send("GET /hang HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
            #expect(eventually(within: 2) { setup.pro.requests == 1 })
            client.resetOnClose()
        }
        #expect(eventually(within: 2) { setup.pro.openConnections == 0 })
        #expect(eventually(within: 2) { setup.ingress.server.stats().openClientConnections == 0 })
    }

    @Test("a client that half-closes after its requests still gets every answer, then the close")
    func halfClose() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        // Two pipelined requests, then the end of the stream: both are answered.
        try client.send("GET /one HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        client.finishSending()
        let first = try client.readResponse()
        let second = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.header("x-upstream-path") == "/one")
        #expect(second.status == 200)
        #expect(second.header("x-upstream-path") == "/two")
        #expect(client.waitForClose())
        // An idle connection that half-closes is closed at once.
        let idle = try TestClient(port: setup.ingress.port)
        idle.finishSending()
        #expect(idle.waitForClose())
        #expect(eventually(within: 2) { setup.ingress.server.stats().openClientConnections == 0 })
    }

    @Test("a large response reaches a slow reader whole", arguments: [100_000, 8 * 1024 * 1024])
    func largeResponse(_ size: Int) throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /big/\(size) HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        // Let the socket buffers fill before reading.
        usleep(200_000)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.body.count == size)
        let expected = (0..<251).map { UInt8($0) }
        var intact = true
        var offset = 0
        while offset < response.body.count && intact {
            let count = min(251, response.body.count - offset)
            intact = response.body[offset..<(offset + count)].elementsEqual(expected[0..<count])
            offset += count
        }
        #expect(intact)
        try client.send("GET /after HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
    }

    @Test("a table that sends a pool to the ingress's own port is refused, not looped")
    func ownPort() throws {
        let ingress = try IngressHarness(routes: nil)
        defer { ingress.stop() }
        try ingress.write(Routes(version: 1, pools: ["free": ingress.port], customers: ["acme": "free"]))
        #expect(eventually(within: 1) { ingress.server.routesVersion == 1 })
        let response = try TestClient.get(port: ingress.port, host: "a.acme.localhost", path: "/")
        #expect(response.status == 502)
        #expect(response.json["message"]?.contains("own") == true)
    }
}
