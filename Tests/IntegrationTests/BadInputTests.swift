#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// Malformed HTTP on a pool's port and on the ingress: each gets a clean error and a
/// closed connection, and the one worker behind both keeps serving everyone else.
/// The statuses come from the errors the README lists under "Addressing" and
/// HTTPParseError's documented statuses (head or header count over the limit: 431; body over `max_body_kb`:
/// 413; bad framing: 400).
@Suite(.serialized) struct BadInputTests {
    static let hostHeader = "Host: echo.acme.localhost\r\n"

    /// One free worker serving customer `acme`'s `echo` script, and the ingress
    /// routing to it. Returns the pool's and the ingress's ports.
    static func startHost() throws -> (host: HostHarness, pool: Int, ingress: Int) {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1, canaryWorkers: 0)])
        try host.assign(customer: "acme", to: "free")
        try host.writeScript(customer: "acme", name: "echo", source: DataPlaneTests.echo)
        try host.start()
        let pool = try host.pool("free").port
        guard let address = try host.status().ingress, let ingress = Int(address.split(separator: ":").last ?? "") else {
            host.stop()
            throw HarnessError("no ingress in status")
        }
        let routed = waitFor(timeout: 10, interval: 0.05) {
            httpGet(port: ingress, host: "echo.acme.localhost")?.status == 200
        }
        guard routed != nil else {
            host.stop()
            throw HarnessError("the ingress never routed acme")
        }
        return (host, pool, ingress)
    }

    struct Case: CustomStringConvertible {
        var name: String
        var request: [UInt8]
        var status: String
        var kind: String
        var description: String { name }
    }

    static func head(_ extra: String = "") -> String {
        "POST /x HTTP/1.1\r\n\(hostHeader)\(extra)"
    }

    static func chunked(_ body: String) -> [UInt8] {
        Array((head("Transfer-Encoding: chunked\r\n") + "\r\n" + body).utf8)
    }

    /// Cases that both the pool and the ingress must refuse the same way (the
    /// ingress parses with the same rules; its own body limit is 8 MiB).
    static let sharedCases: [Case] = [
        Case(name: "header block over 16 KiB", request: Array(("GET /x HTTP/1.1\r\n\(hostHeader)X-Big: "
                + String(repeating: "a", count: 17 * 1024) + "\r\n\r\n").utf8), status: "431", kind: "bad-request"),
        Case(name: "101 header fields", request: Array(("GET /x HTTP/1.1\r\n\(hostHeader)"
                + (1...101).map { "X-H\($0): v\r\n" }.joined() + "\r\n").utf8), status: "431", kind: "bad-request"),
        Case(name: "chunk size not hex", request: chunked("zz\r\nabc\r\n0\r\n\r\n"), status: "400", kind: "bad-request"),
        Case(name: "chunk size negative", request: chunked("-3\r\nabc\r\n0\r\n\r\n"), status: "400", kind: "bad-request"),
        Case(name: "chunk data without its CRLF", request: chunked("3\r\nabcXY0\r\n\r\n"), status: "400", kind: "bad-request"),
        Case(name: "chunk size line with a bare LF", request: chunked("3\nabc\r\n0\r\n\r\n"), status: "400", kind: "bad-request"),
        Case(name: "chunk size overflowing 64 bits", request: chunked("fffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
             status: "400", kind: "bad-request"),
        Case(name: "chunk-size line over 1 KiB", request: chunked("3;" + String(repeating: "e", count: 2000) + "\r\nabc\r\n0\r\n\r\n"),
             status: "400", kind: "bad-request"),
        Case(name: "Content-Length and chunked", request: Array((head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")
                + "\r\n3\r\nabc\r\n0\r\n\r\n").utf8), status: "400", kind: "bad-request"),
        Case(name: "Content-Length not a number", request: Array((head("Content-Length: 1e3\r\n") + "\r\n").utf8),
             status: "400", kind: "bad-request"),
        Case(name: "Content-Length 2^64", request: Array((head("Content-Length: 18446744073709551616\r\n") + "\r\n").utf8),
             status: "413", kind: "too-large"),
        Case(name: "body over the ingress's 8 MiB limit", request: Array((head("Content-Length: \(9 * 1024 * 1024)\r\n") + "\r\n").utf8),
             status: "413", kind: "too-large"),
        Case(name: "chunk size over the ingress's 8 MiB limit", request: chunked("900000\r\nabc"), status: "413", kind: "too-large"),
    ]

    /// The pool's own body limit (`max_body_kb = 64` in the test cohorts), which the
    /// ingress applies itself: it knows each pool's limit from the routing table.
    static let poolLimitCases: [Case] = [
        Case(name: "Content-Length over max_body_kb", request: Array((head("Content-Length: \(65 * 1024)\r\n") + "\r\n").utf8),
             status: "413", kind: "too-large"),
        Case(name: "chunk size over max_body_kb", request: chunked("10001\r\nabc"), status: "413", kind: "too-large"),
    ]

    @Test func malformedRequestsGetCleanErrorsOnThePoolAndTheIngress() throws {
        let (host, poolPort, ingressPort) = try Self.startHost()
        defer { host.stop() }
        let workerPID = try #require(try host.pool("free").workers.first?.pid)
        let ingressPID = try host.status().ingressPID

        func check(_ target: String, port: Int, _ testCase: Case, bodyFollows: [UInt8] = []) {
            let client = RawClient(port: port)
            guard let client else {
                Issue.record("\(target): cannot connect")
                return
            }
            client.send(testCase.request)
            // A body sent after the head; the server may close before it is all in.
            if !bodyFollows.isEmpty { client.send(bodyFollows) }
            let (text, closed) = client.readUntilClose(timeout: 5)
            let statusLine = text.components(separatedBy: "\r\n").first ?? ""
            print("\(target) · \(testCase.name): \(statusLine)\(closed ? ", closed" : ", open")")
            #expect(text.hasPrefix("HTTP/1.1 \(testCase.status) "), "\(target) · \(testCase.name): \(text.prefix(300))")
            #expect(text.contains("x-bulkhead-error: \(testCase.kind)\r\n"), "\(target) · \(testCase.name): \(text.prefix(300))")
            #expect(text.contains("\"error\":\"\(testCase.kind)\""), "\(target) · \(testCase.name): a JSON error body")
            #expect(closed, "\(target) · \(testCase.name): the connection is closed after a framing error")
            // Nothing else is affected: a good request on a fresh connection is served.
            let after = httpGet(port: port, host: "echo.acme.localhost", path: "/after")
            #expect(after?.status == 200, "\(target) · \(testCase.name): the next request is served")
        }

        for testCase in Self.sharedCases + Self.poolLimitCases {
            check("pool", port: poolPort, testCase)
        }
        for testCase in Self.sharedCases + Self.poolLimitCases {
            check("ingress", port: ingressPort, testCase)
        }
        // Through the ingress, a body over the pool's limit is refused by the ingress
        // from the head alone, and the connection closes in order: the client that
        // goes on sending the body still reads the 413.
        check("ingress", port: ingressPort, Self.poolLimitCases[0], bodyFollows: [UInt8](repeating: UInt8(ascii: "b"), count: 65 * 1024))

        // Pipelined: two good requests, a bad one, a good one, in one write. The good
        // ones before the bad one are answered in order, then 400, then the close;
        // the one after the bad request is never answered (the stream is out of sync).
        let good = "GET /p HTTP/1.1\r\n\(Self.hostHeader)\r\n"
        let pipelined = good + good + "GET /bad HTTP/1.1\r\n\(Self.hostHeader)Bad Header\r\n\r\n" + good
        for (target, port) in [("pool", poolPort), ("ingress", ingressPort)] {
            let client = try #require(RawClient(port: port))
            client.send(pipelined)
            let (text, closed) = client.readUntilClose(timeout: 5)
            let statuses = RawClient.statusLines(text)
            print("\(target) · pipelined good, good, bad, good: \(statuses)\(closed ? ", closed" : "")")
            #expect(statuses == ["200", "200", "400"], "\(target): \(text)")
            #expect(text.components(separatedBy: "GET /p ").count - 1 == 2, "\(target): both good requests reached the script")
            #expect(closed)
        }

        // The same worker and the same ingress served all of it: nothing crashed.
        let pool = try host.pool("free")
        #expect(pool.workers.map(\.pid) == [workerPID], "the worker was never replaced")
        #expect(try host.status().ingressPID == ingressPID, "the ingress was never replaced")
        #expect(pool.restarts == 0)
    }

    /// Slowloris: requests that trickle in (a byte a second, in the head or in the
    /// body) get 408 and are closed once the arrival timeout (10 s, in
    /// HTTPConnection and IngressOptions) passes, while the one worker keeps
    /// answering everyone else at once. One wait of about 11 s covers the pool and the
    /// ingress together.
    @Test func slowRequestsGet408WhileOthersAreServed() throws {
        let (host, poolPort, ingressPort) = try Self.startHost()
        defer { host.stop() }
        let workerPID = try #require(try host.pool("free").workers.first?.pid)

        struct Trickle {
            var label: String
            var client: RawClient
            var rest: [UInt8]
            var started = Date()
            var closedAfter: Double?
        }
        let slowHead = Array("GET /slow HTTP/1.1\r\n\(Self.hostHeader)X-Slow: \(String(repeating: "s", count: 60))\r\n\r\n".utf8)
        let slowBody = Array("POST /slow HTTP/1.1\r\n\(Self.hostHeader)Content-Length: 60\r\n\r\n\(String(repeating: "b", count: 60))".utf8)
        var trickles: [Trickle] = []
        for (label, port) in [("pool", poolPort), ("ingress", ingressPort)] {
            for (what, bytes, sentAtOnce) in [("head", slowHead, 20), ("body", slowBody, slowBody.count - 60)] {
                let client = try #require(RawClient(port: port))
                client.send(Array(bytes.prefix(sentAtOnce)))
                trickles.append(Trickle(label: "\(label) \(what)", client: client, rest: Array(bytes.dropFirst(sentAtOnce))))
            }
        }
        var served = 0
        var failed: [String] = []
        var slowest = 0.0
        var lastByte = Date()
        var lastRequest = Date.distantPast
        let deadline = Date().addingTimeInterval(25)
        while Date() < deadline && trickles.contains(where: { $0.closedAfter == nil }) {
            if Date().timeIntervalSince(lastByte) >= 1 {
                lastByte = Date()
                for index in trickles.indices where trickles[index].closedAfter == nil && !trickles[index].rest.isEmpty {
                    // A byte a second: never the last, so the request never completes.
                    if trickles[index].rest.count > 1 {
                        trickles[index].client.send([trickles[index].rest.removeFirst()])
                    }
                }
            }
            for index in trickles.indices where trickles[index].closedAfter == nil {
                trickles[index].client.poll()
                if trickles[index].client.closed {
                    trickles[index].closedAfter = Date().timeIntervalSince(trickles[index].started)
                }
            }
            if Date().timeIntervalSince(lastRequest) >= 0.25 {
                lastRequest = Date()
                for (label, port) in [("pool", poolPort), ("ingress", ingressPort)] {
                    let started = Date()
                    let answer = httpGet(port: port, host: "echo.acme.localhost", path: "/meanwhile", timeout: 3)
                    slowest = max(slowest, Date().timeIntervalSince(started))
                    if answer?.status == 200 { served += 1 } else { failed.append("\(label): \(answer?.status ?? 0)") }
                }
            }
            usleep(20_000)
        }
        for trickle in trickles {
            let text = trickle.client.text
            print("\(trickle.label): \(text.components(separatedBy: "\r\n").first ?? "") after \(trickle.closedAfter.map { String(format: "%.1f s", $0) } ?? "never")")
            #expect(text.hasPrefix("HTTP/1.1 408 "), "\(trickle.label): \(text)")
            #expect(text.contains("x-bulkhead-error: bad-request"), "\(trickle.label)")
            #expect(text.contains("did not arrive within 10 s"), "\(trickle.label): the reason is given")
            #expect(trickle.closedAfter != nil, "\(trickle.label): the connection is closed")
            // Not cut off early: a byte a second keeps it alive until the timeout.
            #expect((trickle.closedAfter ?? 0) >= 8, "\(trickle.label): closed after \(trickle.closedAfter ?? 0) s")
        }
        print("meanwhile: \(served) requests answered 200, \(failed.count) failed, slowest \(String(format: "%.0f ms", slowest * 1000))")
        #expect(failed.isEmpty, "\(failed)")
        #expect(served > 40)
        #expect(try host.pool("free").workers.map(\.pid) == [workerPID])
    }
}
