#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// HTTP correctness of a pool's port, on raw sockets: nothing given up for speed.
@Suite(.serialized) struct DataPlaneTests {
    /// Sends `bytes` on a fresh connection and reads until the server closes it (or
    /// the timeout passes); returns everything read and whether the server closed.
    func exchange(port: Int, _ bytes: [UInt8], timeout: Double = 3) -> (text: String, closed: Bool) {
        guard let fd = connectLoopback(port: port, timeout: timeout) else { return ("", false) }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var closed = false
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count == 0 { closed = true; break }
            if count < 0 { break }
            data.append(contentsOf: chunk[0..<count])
        }
        return (String(decoding: data, as: UTF8.self), closed)
    }

    static let echo = """
        function handle(req)
          return { status = 200, headers = { ["content-type"] = "text/plain" },
                   body = req.method .. " " .. req.path .. " q=" .. req.query .. " len=" .. #req.body .. " body=" .. req.body }
        end
        """

    /// A started host with one pool, `free`, of `workers` workers, serving acme's
    /// echo script and `scripts` (name → source). The caller stops it.
    func echoHost(workers: Int, scripts: [String: String] = [:]) throws -> HostHarness {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: workers)])
        do {
            try host.assign(customer: "acme", to: "free")
            try host.writeScript(customer: "acme", name: "echo", source: Self.echo)
            for (name, source) in scripts { try host.writeScript(customer: "acme", name: name, source: source) }
            try host.start()
        } catch {
            host.stop()
            throw error
        }
        return host
    }

    @Test func httpSemanticsHold() throws {
        let host = try echoHost(workers: 1)
        defer { host.stop() }
        let port = try host.pool("free").port
        let hostHeader = "Host: echo.acme.localhost\r\n"

        // Keep-alive and pipelining: three requests in one write, three answers in order.
        let pipelined = exchange(port: port, Array((
            "GET /one HTTP/1.1\r\n\(hostHeader)\r\n"
                + "GET /two?x=1 HTTP/1.1\r\n\(hostHeader)\r\n"
                + "GET /three HTTP/1.1\r\n\(hostHeader)Connection: close\r\n\r\n").utf8))
        let bodies = pipelined.text.components(separatedBy: "HTTP/1.1 200 OK").dropFirst()
        #expect(bodies.count == 3, "three responses: \(pipelined.text)")
        #expect(bodies.map { $0.contains("GET /one ") } == [true, false, false])
        #expect(bodies.dropFirst().first?.contains("GET /two q=x=1") == true)
        #expect(bodies.last?.contains("connection: close") == true)
        #expect(pipelined.closed, "Connection: close ends the connection after the answer")
        // Every answer, a script's own too, carries its request's id: three distinct ones.
        let ids = pipelined.text.components(separatedBy: "\r\n").filter { $0.hasPrefix("x-request-id: free-") }
        #expect(ids.count == 3 && Set(ids).count == 3, "each answer has its own x-request-id: \(ids)")

        // A Content-Length body reaches the script.
        let post = exchange(port: port, Array(("POST /p HTTP/1.1\r\n\(hostHeader)Content-Length: 5\r\nConnection: close\r\n\r\nhello").utf8))
        #expect(post.text.contains("POST /p q= len=5 body=hello"), "\(post.text)")

        // A chunked body is decoded.
        let chunked = exchange(port: port, Array((
            "POST /c HTTP/1.1\r\n\(hostHeader)Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").utf8))
        #expect(chunked.text.contains("len=5 body=abcde"), "\(chunked.text)")

        // HTTP/1.0: closes by default; keeps alive when asked, and says so.
        let old = exchange(port: port, Array("GET /old HTTP/1.0\r\n\(hostHeader)\r\n".utf8))
        #expect(old.text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(old.closed)
        let oldKeepAlive = exchange(port: port, Array("GET /ka HTTP/1.0\r\n\(hostHeader)Connection: keep-alive\r\n\r\n".utf8), timeout: 1)
        #expect(oldKeepAlive.text.contains("connection: keep-alive"))
        #expect(!oldKeepAlive.closed, "an HTTP/1.0 client that asked for keep-alive keeps its connection")

        // Malformed requests get a clean 400 with the JSON error, and the connection closes.
        for garbage in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                        "GET / HTTP/1.1\r\n\(hostHeader)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"] {
            let answer = exchange(port: port, Array(garbage.utf8))
            #expect(answer.text.hasPrefix("HTTP/1.1 400"), "\(garbage.debugDescription) → \(answer.text)")
            #expect(answer.text.contains("x-bulkhead-error: bad-request"))
            #expect(answer.text.contains("\"error\":\"bad-request\""))
            #expect(answer.closed)
        }

        // A body over the cohort's max_body_kb (64 in the test cohorts) is refused at once.
        let large = exchange(port: port, Array(("POST /big HTTP/1.1\r\n\(hostHeader)Content-Length: \(65 * 1024)\r\n\r\n").utf8))
        #expect(large.text.hasPrefix("HTTP/1.1 413"), "\(large.text)")
        #expect(large.text.contains("x-bulkhead-error: too-large"))

        // HEAD gets the headers, with the length of the body it does not send.
        let head = exchange(port: port, Array("HEAD /h HTTP/1.1\r\n\(hostHeader)Connection: close\r\n\r\n".utf8))
        #expect(head.text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(head.text.hasSuffix("\r\n\r\n"), "no body after a HEAD answer: \(head.text)")
    }

    /// A client that pipelines requests for large answers and does not read them
    /// holds up neither the worker nor anyone else; when it reads, every byte is
    /// there, in order. A client that half-closes after its request still gets the
    /// answer.
    @Test func slowReadersAndHalfClosesGetEveryByte() throws {
        // `big`: 256 KiB per answer, each line naming the request's path.
        let host = try echoHost(workers: 1, scripts: ["big": """
            function handle(req)
              return string.rep(req.path .. "\\n", 256 * 1024 // (#req.path + 1))
            end
            """])
        defer { host.stop() }
        let port = try host.pool("free").port

        let count = 24  // 6 MiB of answers: far more than the socket buffers hold
        guard let slow = RawClient(port: port) else {
            Issue.record("connection refused")
            return
        }
        var requests = ""
        for index in 0..<count {
            requests += "GET /r\(String(format: "%04d", index)) HTTP/1.1\r\nHost: big.acme.localhost\r\n\r\n"
        }
        slow.send(requests)
        usleep(300_000)

        // Meanwhile the worker serves others at once.
        let started = Date()
        for index in 0..<20 {
            let answer = RawClient.exchange(port: port, "GET /o\(index) HTTP/1.1\r\nHost: echo.acme.localhost\r\nConnection: close\r\n\r\n")
            #expect(answer.text.hasPrefix("HTTP/1.1 200 OK") && answer.text.contains("GET /o\(index) "), "\(answer.text)")
        }
        let others = Date().timeIntervalSince(started)
        print("20 other requests while a client sat on \(count) unread answers: \(Int(others * 1000)) ms")
        #expect(others < 10, "other clients waited \(others) s")

        // Now the slow client reads: every answer whole, in order.
        let statuses = slow.readResponses(count, timeout: 30)
        #expect(statuses.count == count && statuses.allSatisfy { $0 == "200" }, "\(statuses.count) answers")
        let deadline = Date().addingTimeInterval(30)
        let expectedBytes = (0..<count).reduce(0) { total, index in
            let line = "/r\(String(format: "%04d", index))\n"
            return total + line.utf8.count * (256 * 1024 / line.utf8.count)
        }
        var bodies: [String] = []
        while Date() < deadline {
            bodies = slow.text.components(separatedBy: "\r\n\r\n").dropFirst().map { $0.components(separatedBy: "HTTP/1.1 ")[0] }
            if bodies.reduce(0, { $0 + $1.utf8.count }) >= expectedBytes { break }
            slow.poll()
            usleep(5_000)
        }
        #expect(bodies.count == count)
        for (index, body) in bodies.enumerated() {
            let line = "/r\(String(format: "%04d", index))\n"
            #expect(body == String(repeating: line, count: 256 * 1024 / line.utf8.count), "answer \(index) is whole and its own")
        }

        // Half-close: the request, then FIN; the answer comes, then the close.
        guard let halfClosed = RawClient(port: port) else {
            Issue.record("connection refused")
            return
        }
        halfClosed.send("GET /half HTTP/1.1\r\nHost: echo.acme.localhost\r\n\r\n")
        shutdown(halfClosed.fd, Int32(SHUT_WR))
        let answer = halfClosed.readUntilClose(timeout: 5)
        #expect(answer.text.hasPrefix("HTTP/1.1 200 OK") && answer.text.contains("GET /half "), "\(answer.text)")
        #expect(answer.closed, "the worker closes once it has answered a client that half-closed")
    }

    /// A burst of keep-alive connections to a pool spreads over its workers, instead
    /// of landing on whichever worker is back in `accept` first (AcceptBalance).
    @Test func connectionBurstSpreadsOverThePool() throws {
        let host = try echoHost(workers: 2)
        defer { host.stop() }
        let port = try host.pool("free").port

        for round in 0..<3 {
            // Eight connections at once, each kept open while the others are made.
            let clients = (0..<8).compactMap { _ in RawClient(port: port) }
            #expect(clients.count == 8)
            var perWorker: [String: Int] = [:]
            for client in clients {
                client.send("GET /b HTTP/1.1\r\nHost: echo.acme.localhost\r\n\r\n")
                _ = client.readResponses(1)
                let worker = client.text.components(separatedBy: "x-bulkhead-worker: ").dropFirst().first?
                    .prefix { $0.isNumber } ?? ""
                perWorker[String(worker), default: 0] += 1
            }
            print("round \(round): connections per worker \(perWorker)")
            #expect(perWorker.count == 2 && perWorker.values.allSatisfy { $0 >= 3 }, "\(perWorker)")
        }
    }

    /// When the worker closes a connection the client is still sending on (here:
    /// after answering `Connection: close` with more bytes sent behind it), the
    /// client gets the answer and then an orderly close, never a reset that can
    /// destroy the answer. A drain closes idle keep-alive connections the same way.
    @Test func closesAreOrderlyWithBytesStillArriving() throws {
        let host = try echoHost(workers: 1)
        defer { host.stop() }
        let port = try host.pool("free").port

        for round in 0..<5 {
            guard let fd = connectLoopback(port: port, timeout: 5) else {
                Issue.record("connection refused")
                return
            }
            defer { close(fd) }
            // The request that closes, then 256 KiB more that the worker never
            // reads: closing over unread bytes sends a reset.
            var bytes = Array("GET /last HTTP/1.1\r\nHost: echo.acme.localhost\r\nConnection: close\r\n\r\n".utf8)
            bytes += [UInt8](repeating: 0x41, count: 256 * 1024)
            var offset = 0
            while offset < bytes.count {
                let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent < 0 && errno == EINTR { continue }
                if sent <= 0 { break }
                offset += sent
            }
            usleep(200_000)  // the worker answers and closes before the client reads
            var received = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 65536)
            var ending = "timeout"
            while true {
                let count = recv(fd, &chunk, chunk.count, 0)
                if count > 0 {
                    received += chunk[0..<count]
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    ending = count == 0 ? "closed" : String(cString: strerror(errno))
                    break
                }
            }
            let text = String(decoding: received, as: UTF8.self)
            print("round \(round): \(received.count) bytes, then \(ending)")
            #expect(text.hasPrefix("HTTP/1.1 200 OK") && text.contains("GET /last "), "round \(round): \(text)")
            #expect(ending == "closed", "round \(round): the answer is followed by an orderly close")
        }
    }
}
