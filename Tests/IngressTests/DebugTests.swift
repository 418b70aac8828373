import Foundation
import Testing

@Suite struct DebugTests {
    @Test func big() throws {
        let setup = try RoutingTests.Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /big/8388608 HTTP/1.1\r\nHost: a.acme.localhost\r\n\r\n")
        usleep(200_000)
        let (_, got) = try client.readHeadAndSome(milliseconds: 2000)
        print("GOT", got, setup.ingress.server.stats())
    }
}
