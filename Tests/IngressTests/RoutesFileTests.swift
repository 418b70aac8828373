import Foundation
import Ingress
import Testing

/// The routing table follows `run/routes.json`, and fails static.
@Suite("Routes file")
struct RoutesFileTests {
    typealias Setup = RoutingTests.Setup

    private func pool(of customer: String, via port: Int) throws -> String? {
        try TestClient.get(port: port, host: "s.\(customer).localhost", path: "/").header("x-bulkhead-pool")
    }

    @Test("a customer moved from free to pro gets pro answers soon after the file is rewritten")
    func customerMoves() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let port = setup.ingress.port
        #expect(try pool(of: "demo-free", via: port) == "free")
        let routes = Routes(version: 2, pools: ["free": setup.free.port, "pro": setup.pro.port],
                            customers: ["acme": "pro", "demo-free": "pro"])
        let written = Date()
        try setup.ingress.write(routes)
        let moved = try eventually(within: 1.0) { try pool(of: "demo-free", via: port) == "pro" }
        #expect(moved)
        // The watcher polls every 20 ms in tests (50 ms by default); the bound here is
        // loose on purpose, for a loaded machine.
        #expect(Date().timeIntervalSince(written) < 1.0)
        #expect(setup.ingress.server.routesVersion == 2)
        #expect(try pool(of: "acme", via: port) == "pro")
    }

    @Test("a keep-alive client connection follows the move too")
    func keepAliveFollows() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET / HTTP/1.1\r\nHost: s.demo-free.localhost\r\n\r\n")
        #expect(try client.readResponse().header("x-bulkhead-pool") == "free")
        try setup.ingress.write(Routes(version: 2, pools: ["free": setup.free.port, "pro": setup.pro.port],
                                       customers: ["demo-free": "pro"]))
        let moved = try eventually(within: 1.0) {
            try client.send("GET / HTTP/1.1\r\nHost: s.demo-free.localhost\r\n\r\n")
            return try client.readResponse().header("x-bulkhead-pool") == "pro"
        }
        #expect(moved)
    }

    @Test("a malformed file keeps the last table, logged once; a good one is taken again",
          arguments: ["{not json", "{\"version\": 3, \"pools\": {\"free\": \"x\"}, \"customers\": {}}",
                      "{\"version\": 3, \"pools\": {\"free\": 70000}, \"customers\": {}}", "[]", ""])
    func malformed(_ contents: String) throws {
        let setup = try Setup()
        defer { setup.stop() }
        let port = setup.ingress.port
        try setup.ingress.writeRaw(Data(contents.utf8))
        #expect(eventually(within: 2) { setup.ingress.logs.contains { $0.contains("routes file") } })
        // Several more polls go by.
        usleep(200_000)
        #expect(try pool(of: "acme", via: port) == "pro")
        #expect(try pool(of: "demo-free", via: port) == "free")
        #expect(setup.ingress.server.routesVersion == 1)
        let complaints = setup.ingress.logs.filter { $0.contains("routes file") }
        #expect(complaints.count == 1)
        #expect(complaints.first?.contains("keeping routing table version 1") == true)

        try setup.ingress.write(Routes(version: 4, pools: ["free": setup.free.port, "pro": setup.pro.port],
                                       customers: ["acme": "free"]))
        #expect(try eventually(within: 1.0) { try pool(of: "acme", via: port) == "free" })
        #expect(setup.ingress.logs.contains { $0.contains("version 4 loaded") })
    }

    @Test("a file that disappears keeps the last table")
    func removed() throws {
        let setup = try Setup()
        defer { setup.stop() }
        unlink(setup.ingress.routesFile)
        #expect(eventually(within: 2) { setup.ingress.logs.contains { $0.contains("missing") } })
        usleep(150_000)
        #expect(try pool(of: "acme", via: setup.ingress.port) == "pro")
        #expect(setup.ingress.logs.filter { $0.contains("missing") }.count == 1)
    }

    @Test("with no file at start, requests get 502 until one appears")
    func noFileAtStart() throws {
        let free = try FakePool(name: "free")
        let ingress = try IngressHarness(routes: nil)
        defer {
            ingress.stop()
            free.stop()
        }
        let before = try TestClient.get(port: ingress.port, host: "s.acme.localhost", path: "/")
        #expect(before.status == 502)
        #expect(before.header("x-bulkhead-error") == "bad-gateway")
        #expect(ingress.server.routesVersion == nil)
        try ingress.write(Routes(version: 1, pools: ["free": free.port], customers: ["acme": "free"]))
        #expect(try eventually(within: 1.0) { try pool(of: "acme", via: ingress.port) == "free" })
    }

    @Test("a file over the size limit is refused, not read")
    func tooLarge() throws {
        let setup = try Setup { $0.maxRoutesFileBytes = 120 }
        defer { setup.stop() }
        // The first table (about 95 bytes) fits; a bigger one does not.
        #expect(setup.ingress.server.routesVersion == 1)
        var customers: [String: String] = [:]
        for index in 0..<20 { customers["customer-\(index)"] = "free" }
        try setup.ingress.write(Routes(version: 2, pools: ["free": setup.free.port], customers: customers))
        #expect(eventually(within: 2) { setup.ingress.logs.contains { $0.contains("over the 120-byte limit") } })
        #expect(setup.ingress.server.routesVersion == 1)
    }
}
