import Foundation
import Ingress
import Testing

/// Starting, draining and stopping.
@Suite("Lifecycle")
struct LifecycleTests {
    typealias Setup = RoutingTests.Setup

    @Test("stop drains: a request in flight is answered whole, then its connection closes")
    func drainFinishesInFlight() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        // The pool answers /slow-body over a second.
        try client.send("GET /slow-body HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(eventually(within: 2) { setup.pro.requests == 1 })
        // A thread of its own: the test's own thread is blocked reading meanwhile.
        let stopped = DispatchSemaphore(value: 0)
        Thread {
            setup.ingress.server.stop()
            stopped.signal()
        }.start()
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.body.count == 2000)
        #expect(client.waitForClose())
        #expect(stopped.wait(timeout: .now() + 5) == .success)
        let stats = setup.ingress.server.stats()
        #expect(stats.responses == 1)
        #expect(stats.openClientConnections == 0)
    }

    @Test("stop closes idle keep-alive connections and returns promptly")
    func drainClosesIdle() throws {
        let setup = try Setup()
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET / HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        let started = Date()
        setup.ingress.server.stop()
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(client.waitForClose())
        setup.stop()
    }

    @Test("stop without start, and stop twice, are harmless")
    func stopIsIdempotent() throws {
        let (fd, _) = try BulkheadCoreSockets.listen()
        defer { close(fd) }
        let server = try IngressServer(options: IngressOptions(routesFile: "/nonexistent/routes.json", listenFD: fd))
        server.stop()
        server.stop()
        #expect(server.stats().requests == 0)
    }

    @Test("a descriptor that is not open is refused with a clear error")
    func badDescriptor() {
        #expect(throws: IngressError.self) {
            _ = try IngressServer(options: IngressOptions(routesFile: "/tmp/routes.json", listenFD: 987))
        }
    }
}
