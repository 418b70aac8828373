#if canImport(Glibc)
import Glibc
#endif
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

    @Test("a client that pipelines without reading is left unread until it reads; then every answer arrives")
    func nonReadingPipeliner() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        // A small receive buffer, so the answers pile up at the ingress, not here.
        var small: Int32 = 4096
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        // 2000-byte answers: 8 MB in all, more than the sockets' buffers hold.
        let total = 4000
        let requests = Array(String(repeating: "GET /big/2000 HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n", count: total).utf8)
        // Sent from a thread of its own: once the ingress stops reading, the send
        // blocks until this test reads.
        let fd = client.fd
        let sent = DispatchSemaphore(value: 0)
        Thread {
            var offset = 0
            while offset < requests.count {
                let count = requests[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                offset += count
            }
            sent.signal()
        }.start()
        // The ingress takes requests until the answers it holds pass the watermark,
        // then none: the count stands still well short of the total.
        var taken = -1
        var still = 0
        let deadline = Date().addingTimeInterval(20)
        while still < 5 && Date() < deadline {
            usleep(100_000)
            let now = setup.ingress.server.stats().requests
            still = now == taken ? still + 1 : 0
            taken = now
        }
        print("a client that does not read: the ingress took \(taken) of \(total) pipelined requests, then waited")
        #expect(taken < total, "the ingress kept taking requests whose answers the client does not read")
        // Reading lets it go on: every answer arrives whole, none lost. (A receive
        // buffer of normal size again: a 4 KiB window makes loopback crawl.)
        var normal: Int32 = 1 << 20
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &normal, socklen_t(MemoryLayout<Int32>.size))
        var answered = 0
        while answered < total, let response = try? client.readResponse(), response.status == 200, response.body.count == 2000 {
            answered += 1
        }
        #expect(answered == total)
        #expect(sent.wait(timeout: .now() + 10) == .success)
        #expect(setup.ingress.server.stats().responses == total)
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
