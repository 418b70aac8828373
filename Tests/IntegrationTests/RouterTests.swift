#if canImport(Glibc)
import Glibc
#endif
import ControlAPI
import Foundation
import Testing

/// One route table: every route of the spec answers the same on TCP and on
/// `control.sock` (host routes on `admin.sock` only), the router has no route the
/// spec lacks, and SIGTERM lets a request in flight finish.
@Suite(.serialized) struct RouterTests {
    /// `(METHOD, /path/{param})` of every operation in an OpenAPI document, and
    /// whether it is tagged `host`. (A line reader for this spec's layout: paths at
    /// two spaces, methods at four, tags at six.)
    static func operations(inSpec text: String) -> [(method: String, path: String, host: Bool)] {
        var result: [(method: String, path: String, host: Bool)] = []
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line == "paths:" { inPaths = true; continue }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"),
                      ["get", "put", "post", "delete", "patch"].contains(line.trimmingCharacters(in: .whitespaces).dropLast()) {
                result.append((line.trimmingCharacters(in: .whitespaces).dropLast().uppercased(), path, false))
            } else if line.trimmingCharacters(in: .whitespaces) == "tags: [host]", !result.isEmpty {
                result[result.count - 1].host = true
            }
        }
        return result
    }

    /// Routes whose answers change from one moment to the next (counters, clocks):
    /// compared by status only.
    static let volatile: Set<String> = ["/", "/metrics", "/healthz", "/v1/admin/status", "/v1/host/status"]

    @Test func everySpecRouteAnswersTheSameOnTCPAndOnTheControlSocket() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1),
                                           HostHarness.Pool(name: "pro", order: 2, workers: 1)])
        defer { host.stop() }
        try host.start()
        let customer = try host.addCustomer("acme", cohort: "free")
        let admin = try host.adminToken()
        #expect(try host.api("PUT", "/v1/scripts/hello", token: customer,
                             body: Array("function handle(req) return 'hi' end".utf8)).status == 201)
        let spec = try host.api("GET", "/openapi.yaml", token: nil)
        try #require(spec.status == 200)
        #expect(spec.body.contains("\n  - url: http://127.0.0.1:\(try host.apiPort())\n"), "the spec names the address it is served on")
        let operations = Self.operations(inSpec: spec.body)
        try #require(operations.count >= 20, "the spec reader found \(operations.count) operations")

        // The router's table and the spec name the same routes.
        let specRoutes = Set(operations.map { "\($0.method) \($0.path)" })
        let routerRoutes = Set(ControlAPI.routes.map { "\($0.method.rawValue) \($0.specPath)" }
            + HostRoutes.routes.map { "\($0.method.rawValue) \($0.specPath)" })
        #expect(routerRoutes.subtracting(specRoutes).isEmpty, "routes the spec lacks: \(routerRoutes.subtracting(specRoutes).sorted())")
        #expect(specRoutes.subtracting(routerRoutes).isEmpty, "spec routes no router serves: \(specRoutes.subtracting(routerRoutes).sorted())")

        var compared = 0
        for operation in operations {
            // Reads name what exists; writes name what does not, so each is refused
            // the same deterministic way on both listeners and changes nothing.
            let reads = operation.method == "GET"
            let path = operation.path
                .replacingOccurrences(of: "{name}", with: reads ? "hello" : "missing-x")
                .replacingOccurrences(of: "{customer}", with: reads ? "acme" : "missing-x")
                .replacingOccurrences(of: "{id}", with: "999")
                .replacingOccurrences(of: "{command}", with: "pause")
            let body = reads ? [] : Array("{}".utf8)
            let label = "\(operation.method) \(operation.path)"
            if operation.host {
                let local = try host.host(operation.method, path, body: body)
                #expect(![404, 405].contains(local.status) || local.body.contains("\"error\""), "\(label) on admin.sock: \(local.status) \(local.body)")
                let overTCP = try host.api(operation.method, path, token: admin, body: body)
                #expect(overTCP.status == 404, "\(label) is a host route, yet TCP answered \(overTCP.status)")
                continue
            }
            let token = path.hasPrefix("/v1/scripts") ? customer : (path.hasPrefix("/v1/admin") ? admin : nil)
            let tcp = try host.api(operation.method, path, token: token, body: body)
            let socket = try host.control(operation.method, path, token: token == admin ? nil : token, body: body)
            #expect(tcp.status != 405 && socket.status != 405, "\(label): \(tcp.status) / \(socket.status)")
            #expect(tcp.status == socket.status, "\(label): TCP \(tcp.status) \(tcp.body.prefix(200)), control.sock \(socket.status) \(socket.body.prefix(200))")
            if !Self.volatile.contains(operation.path) {
                #expect(tcp.body == socket.body, "\(label): TCP \(tcp.body.prefix(300)) ≠ control.sock \(socket.body.prefix(300))")
            }
            compared += 1
        }
        print("route parity: \(compared) control routes compared on TCP and control.sock, \(operations.count - compared) host routes on admin.sock")
        // A route on one listener only is caught: admin.sock serves no control route.
        #expect(try host.host("GET", "/v1/admin/customers").status == 404)
        // control.sock without a token is the operator; TCP without one is no one.
        #expect(try host.control("GET", "/v1/admin/customers").status == 200)
        #expect(try host.api("GET", "/v1/admin/customers", token: nil).status == 401)
        // A wrong token on control.sock is refused, never taken for the operator.
        #expect(try host.control("GET", "/v1/admin/customers", token: "bht_wrong").status == 401)
    }

    @Test func sigtermLetsAnAPIRequestInFlightFinish() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1),
                                           HostHarness.Pool(name: "pro", order: 2, workers: 1)])
        defer { host.stop() }
        try host.start()
        _ = try host.addCustomer("acme", cohort: "free")
        let admin = try host.adminToken()
        let supervisor = try #require(host.supervisor)
        // A cohort move holds its request for at least half a second (the ingress
        // switch), long enough to send SIGTERM while it runs.
        let answer = LockedBox<(status: Int, body: String)?>(nil)
        let started = Date()
        let client = Thread {
            let reply = try? host.api("POST", "/v1/admin/customers/acme/move", token: admin, body: Array(#"{"cohort": "pro"}"#.utf8))
            answer.set(reply.map { ($0.status, $0.body) })
        }
        client.start()
        usleep(200_000)
        kill(supervisor.processIdentifier, SIGTERM)
        let ended = waitFor(timeout: 20, interval: 0.02) { answer.get() != nil && !supervisor.isRunning }
        let result = answer.get()
        print("move answered after \(String(format: "%.2f", Date().timeIntervalSince(started))) s with SIGTERM at 0.2 s: \(String(describing: result))")
        #expect(ended != nil, "the request or the stop did not end")
        #expect(result?.status == 200, "the request in flight was cut: \(String(describing: result))")
        #expect(result?.body.contains(#""to":"pro""#) == true)
        #expect(!supervisor.isRunning)
    }
}

/// A value shared with a thread.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func get() -> Value { lock.withLock { value } }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
}
