#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One HTTP response as a test reads it.
struct TestResponse {
    var status: Int
    /// Header fields with lower-cased names, in order.
    var fields: [(name: String, value: String)]
    var body: [UInt8]

    /// The first value of `name` (lower-case).
    func header(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    /// Every value of `name` (lower-case).
    func headers(_ name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    var text: String {
        String(decoding: body, as: UTF8.self)
    }

    /// The body as JSON, for the ingress's error answers.
    var json: [String: String] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: String] ?? [:]
    }
}

struct TestClientError: Error, CustomStringConvertible {
    var description: String
}

/// A blocking HTTP/1.1 client on one connection: sends bytes as given and reads
/// responses framed by Content-Length (or by the close). Every read times out after
/// 5 s, so a broken ingress fails the test instead of hanging it.
final class TestClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestClientError(description: "socket: errno \(errno)") }
        var time = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 && errno == EINTR {
            // Interrupted by a signal: the connect goes on; wait for it to finish.
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while poll(&poller, 1, 5000) < 0 && errno == EINTR {}
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            if failure == 0 && poller.revents & Int16(POLLOUT) != 0 { return }
            errno = failure
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw TestClientError(description: "connect to \(port): errno \(code)")
        }
    }

    deinit {
        Glibc.close(fd)
    }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw TestClientError(description: "send: errno \(errno)") }
            offset += written
        }
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    ///
    /// A signal interrupts a `recv` on a socket with a receive timeout even under
    /// SA_RESTART, and this process gets some: the sandbox's budget tick goes on for
    /// a few ms on a test thread after a Lua test ran on it. Such a `recv` is tried
    /// again.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        var count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        while count < 0 && errno == EINTR {
            count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        }
        if count == 0 {
            closed = true
            return false
        }
        guard count > 0 else {
            if errno == ECONNRESET {
                closed = true
                return false
            }
            throw TestClientError(description: "recv: errno \(errno) (timed out?)")
        }
        buffer.append(contentsOf: chunk[0..<count])
        return true
    }

    /// Reads one response. `head`: the request was HEAD (no body follows).
    func readResponse(head: Bool = false) throws -> TestResponse {
        var end: Int?
        while end == nil {
            end = Self.headEnd(buffer)
            if end == nil, try !fill() { throw TestClientError(description: "closed before a response head") }
        }
        guard let end else { throw TestClientError(description: "no head") }
        let headText = String(decoding: buffer[0..<end], as: UTF8.self)
        buffer.removeFirst(end)
        var lines = headText.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw TestClientError(description: "empty head") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw TestClientError(description: "bad status line \(statusLine)")
        }
        let fields = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = TestResponse(status: status, fields: fields, body: [])
        if head || status == 204 || status == 304 || status < 200 { return response }
        if let length = response.header("content-length").flatMap(Int.init) {
            while buffer.count < length {
                if try !fill() { throw TestClientError(description: "closed after \(buffer.count) of \(length) body bytes") }
            }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else {
            while try fill() {}
            response.body = buffer
            buffer.removeAll()
        }
        return response
    }

    /// Reads the head and whatever body bytes arrive within `milliseconds`.
    func readHeadAndSome(milliseconds: Int) throws -> (TestResponse, Int) {
        var end: Int?
        while end == nil {
            end = Self.headEnd(buffer)
            if end == nil, try !fill() { throw TestClientError(description: "closed before a response head") }
        }
        guard let end else { throw TestClientError(description: "no head") }
        let headBytes = Array(buffer[0..<end])
        buffer.removeFirst(end)
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        var time = timeval(tv_sec: 0, tv_usec: 20_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        while Date() < deadline {
            _ = try? fill()
        }
        time = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        let status = Int(String(decoding: headBytes[9..<12], as: UTF8.self)) ?? 0
        return (TestResponse(status: status, fields: [], body: []), buffer.count)
    }

    /// Reads until the peer closes; true when it did (within the timeout).
    /// Shuts the sending side down (a half-close): the ingress reads the end of the
    /// stream, and this client can still read.
    func finishSending() {
        shutdown(fd, Int32(SHUT_WR))
    }

    /// Makes the close at deinit a reset (SO_LINGER 0): the ingress learns at once
    /// that nobody is left to answer.
    func resetOnClose() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    func waitForClose() -> Bool {
        while !closed {
            guard (try? fill()) != nil else { return false }
        }
        return true
    }

    /// The length of the head at the start of `bytes` (through its blank line), or
    /// nil while it is incomplete.
    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index + 4
        }
        return nil
    }
}

extension TestClient {
    /// One request on a new connection: `GET path` with Host `host`.
    static func get(port: Int, host: String, path: String, close: Bool = true) throws -> TestResponse {
        let client = try TestClient(port: port)
        try client.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\(close ? "Connection: close\r\n" : "")\r\n")
        return try client.readResponse()
    }
}
