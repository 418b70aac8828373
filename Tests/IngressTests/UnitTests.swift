import BulkheadCore
import Foundation
import HTTPWire
import NIOCore
import Testing

@testable import Ingress

/// The pure parts: the response-head rewriter, the routes file parser, the request
/// forwarding.
@Suite("Response heads")
struct ResponseHeadTests {
    private func rewrite(_ text: String, max: Int = 4096) -> (ResponseHeadResult, String) {
        var output = ByteBuffer(string: "kept|")
        let result = Array(text.utf8).withUnsafeBytes {
            ResponseHeadRewriter.rewrite($0, maxHeadBytes: max, into: &output)
        }
        return (result, String(buffer: output))
    }

    @Test("a worker's head: fields kept in order, Connection dropped, length and close read")
    func workerHead() throws {
        let text = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-bulkhead-pool: free\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello"
        let (result, output) = rewrite(text)
        guard case .head(let head) = result else {
            Issue.record("not a head: \(result)")
            return
        }
        #expect(head.status == 200)
        #expect(head.contentLength == 5)
        #expect(head.upstreamCloses)
        #expect(head.length == text.utf8.count - 5)
        #expect(output == "kept|HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-bulkhead-pool: free\r\ncontent-length: 5\r\n")
    }

    @Test("HTTP/1.0 closes unless keep-alive; its status line goes out as HTTP/1.1")
    func http10() {
        let (closes, output) = rewrite("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        if case .head(let head) = closes { #expect(head.upstreamCloses) } else { Issue.record("\(closes)") }
        #expect(output.hasPrefix("kept|HTTP/1.1 404 Not Found\r\n"))
        let (stays, _) = rewrite("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
        if case .head(let head) = stays { #expect(!head.upstreamCloses) } else { Issue.record("\(stays)") }
    }

    @Test("bare LF line ends are read; a status line without a reason is fine")
    func lenientLineEnds() {
        let (result, output) = rewrite("HTTP/1.1 204\nX-A: 1\n\n")
        if case .head(let head) = result {
            #expect(head.status == 204)
            #expect(!head.hasBody(requestWasHead: false))
        } else {
            Issue.record("\(result)")
        }
        #expect(output == "kept|HTTP/1.1 204\r\nX-A: 1\r\n")
    }

    @Test("an incomplete head writes nothing", arguments: ["", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r\nA: b\r\n", "HTTP/1.1 200 OK\r\n\r"])
    func incomplete(_ text: String) {
        let (result, output) = rewrite(text)
        #expect(result == .incomplete)
        #expect(output == "kept|")
    }

    @Test("malformed heads are refused and write nothing", arguments: [
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nname : x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ])
    func malformed(_ text: String) {
        let (result, output) = rewrite(text)
        guard case .invalid = result else {
            Issue.record("accepted: \(result)")
            return
        }
        #expect(output == "kept|")
    }

    @Test("a head over the limit is refused, complete or not")
    func tooLarge() {
        let big = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 200)
        #expect(rewrite(big, max: 100).0 != .incomplete)
        #expect(rewrite(big + "\r\n\r\n", max: 100).0 != .incomplete)
        if case .head = rewrite(big + "\r\n\r\n", max: 100).0 { Issue.record("accepted") }
    }

    @Test("HEAD, 204, 304 and 1xx have no body")
    func bodiless() {
        let head = ResponseHead(status: 200, length: 0, contentLength: 5, transferEncoding: false, upstreamCloses: false)
        #expect(head.hasBody(requestWasHead: false))
        #expect(!head.hasBody(requestWasHead: true))
        for status in [100, 204, 304] {
            #expect(!ResponseHead(status: status, length: 0, contentLength: nil, transferEncoding: false, upstreamCloses: false)
                .hasBody(requestWasHead: false))
        }
    }
}

@Suite("Routing table")
struct RoutingTableTests {
    @Test("a good file resolves customers to their pool's port")
    func good() throws {
        let json = #"{"version": 7, "pools": {"free": 8101, "pro": 8102}, "customers": {"acme": "pro", "lost": "enterprise"}}"#
        let table = try RoutingTable.parse(Data(json.utf8))
        #expect(table.version == 7)
        #expect(table.destination(of: "acme") == .pool(name: "pro", port: 8102, maxBodyBytes: nil))
        #expect(table.destination(of: "lost") == .poolWithoutPort(name: "enterprise"))
        #expect(table.destination(of: "nobody") == .unknownCustomer)
        #expect(table.largestMaxBodyBytes == nil, "a file without body limits leaves the ingress's own")
    }

    @Test("each pool's body limit comes with its customers' destination")
    func bodyLimits() throws {
        let json = #"{"version": 2, "pools": {"free": 8101, "enterprise": 8103}, "customers": {"cheap": "free", "big": "enterprise"}, "max_body_bytes": {"free": 1048576, "enterprise": 8388608}}"#
        let table = try RoutingTable.parse(Data(json.utf8))
        #expect(table.destination(of: "cheap") == .pool(name: "free", port: 8101, maxBodyBytes: 1_048_576))
        #expect(table.destination(of: "big") == .pool(name: "enterprise", port: 8103, maxBodyBytes: 8_388_608))
        #expect(table.largestMaxBodyBytes == 8_388_608)
    }

    @Test("the table the supervisor writes is the table the ingress reads")
    func writtenByTheSupervisorsType() throws {
        let routes = IngressRoutes(
            version: 4, pools: ["free": 8101, "pro": 8102], customers: ["acme": "pro"], maxBodyBytes: ["free": 1024, "pro": 2048])
        let table = try RoutingTable.parse(routes.encoded())
        #expect(table.version == 4)
        #expect(table.destination(of: "acme") == .pool(name: "pro", port: 8102, maxBodyBytes: 2048))
        #expect(table.largestMaxBodyBytes == 2048)
    }

    @Test("extra keys are ignored")
    func extraKeys() throws {
        let json = #"{"version": 1, "pools": {}, "customers": {}, "written_by": "supervisor 42"}"#
        #expect(try RoutingTable.parse(Data(json.utf8)).version == 1)
    }

    @Test("malformed files say what is wrong", arguments: [
        ("{", "not valid JSON"),
        (#"{"pools": {}, "customers": {}}"#, "missing 'version'"),
        (#"{"version": 1, "pools": {"free": "8101"}, "customers": {}}"#, "'pools.free' is not an integer"),
        (#"{"version": 1, "pools": {"free": 0}, "customers": {}}"#, "ports are 1 to 65535"),
        (#"{"version": 1, "pools": {}, "customers": {"acme": 3}}"#, "'customers.acme' is not a string"),
        (#"{"version": 1, "pools": {}, "customers": {}, "max_body_bytes": {"free": -1}}"#, "a body limit is at least 0"),
        (#"{"version": 1, "pools": {}, "customers": {}, "max_body_bytes": {"free": "1"}}"#, "'max_body_bytes.free' is not an integer"),
    ])
    func malformed(_ json: String, _ expected: String) {
        do {
            _ = try RoutingTable.parse(Data(json.utf8))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.description.contains(expected), "\(error)")
        }
    }
}

@Suite("Request forwarding")
struct RequestForwardingTests {
    private func forward(_ text: String, from address: String? = "10.1.2.3") throws -> String {
        var parser = HTTPRequestParser()
        var output = ByteBuffer()
        let bytes = Array(text.utf8)
        let line = try address.map { try RequestForwarding.forwardedForLine(SocketAddress(ipAddress: $0, port: 1)) } ?? []
        try bytes.withUnsafeBytes { raw in
            guard case .request(let head) = parser.parse(raw) else { throw TestClientError(description: "not parsed") }
            parser.withBody(of: head, in: raw) { body in
                RequestForwarding.write(head, fields: parser.headerFields, bytes: raw, body: body, forwardedFor: line, into: &output)
            }
        }
        return String(buffer: output)
    }

    @Test("method, target and end-to-end fields as sent; framing and hop-by-hop rewritten")
    func rewrite() throws {
        let forwarded = try forward(
            "PUT /a/b?c=d HTTP/1.1\r\nHost: s.c.localhost\r\nExpect: 100-continue\r\nX-Forwarded-For: 1.1.1.1\r\n"
                + "Content-Length: 3\r\nConnection: keep-alive\r\n\r\nabc")
        #expect(forwarded == "PUT /a/b?c=d HTTP/1.1\r\nHost: s.c.localhost\r\nX-Forwarded-For: 1.1.1.1\r\n"
            + "x-forwarded-for: 10.1.2.3\r\ncontent-length: 3\r\n\r\nabc")
    }

    @Test("an absolute-form target's authority becomes the Host of an HTTP/1.0 request without one")
    func absoluteForm() throws {
        let forwarded = try forward("GET http://s.c.localhost/p HTTP/1.0\r\n\r\n", from: nil)
        #expect(forwarded == "GET http://s.c.localhost/p HTTP/1.1\r\nhost: s.c.localhost\r\n\r\n")
    }

    @Test("an empty Content-Length body stays explicit; no body, no length")
    func lengths() throws {
        #expect(try forward("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", from: nil)
            == "POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n")
        #expect(try forward("GET / HTTP/1.1\r\nHost: h\r\n\r\n", from: nil) == "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    }
}
