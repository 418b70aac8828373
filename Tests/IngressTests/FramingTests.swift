#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import NIOCore
import Synchronization
import Testing

@testable import Ingress

/// Responses whose status says "no body" (1xx, 204, 304) but whose fields announce
/// one: the reader and the sender would disagree on where the response ends.
@Suite("Response framing")
struct ResponseFramingTests {
    private func rewrite(_ text: String) -> ResponseHeadResult {
        var output = ByteBuffer()
        return Array(text.utf8).withUnsafeBytes { ResponseHeadRewriter.rewrite($0, maxHeadBytes: 4096, into: &output) }
    }

    private func isInvalid(_ result: ResponseHeadResult, mentioning words: String) -> Bool {
        if case .invalid(let reason) = result { return reason.contains(words) }
        return false
    }

    @Test("a 1xx with Content-Length or Transfer-Encoding is refused", arguments: [100, 102, 103, 199])
    func interimWithLength(_ status: Int) {
        let length = rewrite("HTTP/1.1 \(status) X\r\ncontent-length: 6\r\n\r\nforged")
        #expect(isInvalid(length, mentioning: "interim"), "\(length)")
        let zero = rewrite("HTTP/1.1 \(status) X\r\nContent-Length: 0\r\n\r\n")
        #expect(isInvalid(zero, mentioning: "Content-Length"), "\(zero)")
        let chunked = rewrite("HTTP/1.1 \(status) X\r\ntransfer-encoding: chunked\r\n\r\n")
        #expect(isInvalid(chunked, mentioning: "Transfer-Encoding"), "\(chunked)")
    }

    @Test("a bare 1xx is a head like any other (the handler skips it)")
    func bareInterim() {
        guard case .head(let head) = rewrite("HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n") else {
            Issue.record("not a head")
            return
        }
        #expect(head.status == 103)
        #expect(!head.hasBody(requestWasHead: false))
    }

    @Test("204 and 304 with a nonzero Content-Length are refused; with none or 0 they pass", arguments: [204, 304])
    func noContentWithLength(_ status: Int) {
        #expect(isInvalid(rewrite("HTTP/1.1 \(status) X\r\ncontent-length: 4\r\n\r\nleak"), mentioning: "Content-Length: 4"))
        #expect(isInvalid(rewrite("HTTP/1.1 \(status) X\r\ntransfer-encoding: chunked\r\n\r\n"), mentioning: "Transfer-Encoding"))
        for text in ["HTTP/1.1 \(status) X\r\netag: \"v\"\r\n\r\n", "HTTP/1.1 \(status) X\r\ncontent-length: 0\r\n\r\n"] {
            guard case .head(let head) = rewrite(text) else {
                Issue.record("refused: \(text)")
                continue
            }
            #expect(head.status == status)
        }
    }

    @Test("other statuses keep their Content-Length")
    func otherStatuses() {
        for status in [200, 205, 404] {
            guard case .head(let head) = rewrite("HTTP/1.1 \(status) X\r\ncontent-length: 4\r\n\r\nbody") else {
                Issue.record("refused \(status)")
                continue
            }
            #expect(head.contentLength == 4)
        }
    }
}

/// The same through a live ingress, with a pool that sends exactly the bytes a test
/// gives it (what a worker of an earlier build sent for a script's status 100 or 204).
@Suite("Response framing, live")
struct LiveResponseFramingTests {
    /// The response a worker of commit d1a2047 wrote for `{status = 100, body = FORGED}`:
    /// its own head with a Content-Length, then a whole response head as the body.
    static let forged = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-bulkhead-pool: forged\r\nx-bulkhead-error: none\r\ncontent-length: 6\r\n\r\nforged"

    static func answer(path: String) -> String {
        let identity = "x-bulkhead-pool: free\r\nx-bulkhead-worker: 1\r\n"
        switch path {
        case "/interim-with-body":
            return "HTTP/1.1 100 Continue\r\ncontent-type: text/plain\r\n\(identity)content-length: \(forged.utf8.count)\r\n\r\n" + forged
        case "/no-content-with-body":
            return "HTTP/1.1 204 No Content\r\n\(identity)content-length: \(forged.utf8.count)\r\n\r\n" + forged
        case "/early-hints":
            return "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\(identity)content-length: 5\r\n\r\nfinal"
        case "/not-modified":
            return "HTTP/1.1 304 Not Modified\r\n\(identity)etag: \"v1\"\r\n\r\n"
        default:
            return "HTTP/1.1 200 OK\r\n\(identity)content-length: 2\r\n\r\nok"
        }
    }

    final class Setup: Sendable {
        let pool: CannedPool
        let ingress: IngressHarness

        init() throws {
            pool = try CannedPool { LiveResponseFramingTests.answer(path: $0) }
            ingress = try IngressHarness(routes: Routes(version: 1, pools: ["free": pool.port], customers: ["acme": "free"]))
        }

        func stop() {
            ingress.stop()
            pool.stop()
        }
    }

    @Test("a 1xx with a body cannot forge a response: the client gets 502, then goes on", arguments: ["/interim-with-body", "/no-content-with-body"])
    func bodyAfterNoBodyStatus(_ path: String) throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET \(path) HTTP/1.1\r\nHost: s.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 502, "\(response.status) \(response.fields) \(response.text)")
        #expect(response.header("x-bulkhead-error") == "bad-gateway")
        #expect(response.header("x-bulkhead-pool") == "ingress")
        #expect(response.json["message"]?.contains("has no body") == true, "\(response.text)")
        #expect(!response.text.contains("forged"))
        // The connection to the client goes on, on a fresh upstream connection.
        try client.send("GET /ok HTTP/1.1\r\nHost: s.acme.localhost\r\n\r\n")
        let next = try client.readResponse()
        #expect(next.status == 200)
        #expect(next.text == "ok")
        #expect(next.header("x-bulkhead-pool") == "free")
    }

    @Test("a bare 1xx is not forwarded; the final response is")
    func earlyHints() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /early-hints HTTP/1.1\r\nHost: s.acme.localhost\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.text == "final")
        #expect(response.header("link") == nil)
    }

    @Test("a 304 without Content-Length ends at its head; the connection is reused")
    func notModified() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let client = try TestClient(port: setup.ingress.port)
        try client.send("GET /not-modified HTTP/1.1\r\nHost: s.acme.localhost\r\n\r\nGET /ok HTTP/1.1\r\nHost: s.acme.localhost\r\n\r\n")
        let first = try client.readResponse()
        #expect(first.status == 304)
        #expect(first.header("content-length") == nil)
        #expect(first.header("etag") == "\"v1\"")
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.text == "ok")
        #expect(setup.pool.connectionsAccepted == 1)
    }
}

/// A pool that answers each request (read up to its empty line; no bodies) with the
/// bytes `answer(path)` gives, on real sockets, one thread per connection.
final class CannedPool: Sendable {
    let port: Int
    private let listenFD: Int32
    private let state = Mutex(State())
    private let answer: @Sendable (String) -> String

    private struct State {
        var connections: [Int32] = []
        var accepted = 0
        var stopped = false
    }

    init(answer: @escaping @Sendable (String) -> String) throws {
        (listenFD, port) = try Sockets.listenTCP(host: "127.0.0.1", port: 0)
        self.answer = answer
        Thread { [self] in acceptLoop() }.start()
    }

    var connectionsAccepted: Int { state.withLock { $0.accepted } }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            let keep = state.withLock { state -> Bool in
                guard !state.stopped else { return false }
                state.connections.append(fd)
                state.accepted += 1
                return true
            }
            guard keep else {
                close(fd)
                return
            }
            Thread { [self] in serve(fd) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            pending += chunk[0..<count]
            while let end = TestClient.headEnd(pending) {
                let head = String(decoding: pending[0..<end], as: UTF8.self)
                pending.removeFirst(end)
                let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
                let bytes = Array(answer(path).utf8)
                var offset = 0
                while offset < bytes.count {
                    let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if sent < 0 && errno == EINTR { continue }
                    guard sent > 0 else { return }
                    offset += sent
                }
            }
        }
        // stop() closes the descriptor; closing it here too could close a reused number.
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Stops accepting and ends every connection (the threads see the end and return).
    func stop() {
        let fds = state.withLock { state -> [Int32] in
            state.stopped = true
            return state.connections
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
        // The serving threads may still be inside recv on these: give them the end
        // of stream first, then release the numbers.
        usleep(50_000)
        for fd in fds { close(fd) }
    }
}
