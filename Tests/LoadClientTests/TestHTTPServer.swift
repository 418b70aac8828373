#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// What `TestHTTPServer` does with one request.
enum TestReply: Sendable {
    /// A complete response with a Content-Length; the connection stays open.
    case respond(status: Int, headers: [String: String] = [:], body: String = "")
    /// These bytes verbatim; the connection stays open.
    case raw(String)
    /// These bytes verbatim, then the connection is closed (FIN).
    case rawThenClose(String)
    /// The connection is reset (RST) without a response.
    case reset
    /// No response: the connection stays silent until the client closes it or
    /// the server stops.
    case hang
}

/// A small blocking HTTP/1.1 server on 127.0.0.1 and an ephemeral port, one
/// thread per connection, whose replies the test decides request by request.
///
/// `stop()` ends and joins every thread it started; every loop polls with a short
/// timeout so it notices.
final class TestHTTPServer: Sendable {
    /// The port the kernel picked.
    let port: Int
    private let listener: Int32
    private let handler: @Sendable (Int) -> TestReply
    private let stopping = Atomic<Bool>(false)
    private let served = Atomic<Int>(0)
    private let threads = Mutex<[pthread_t]>([])
    private let acceptThread = Mutex<pthread_t?>(nil)

    /// Requests read so far (each got the handler's reply).
    var requestsServed: Int { served.load(ordering: .acquiring) }

    /// Starts listening; `handler` gets each request's number, from 1, over all
    /// connections.
    init(handler: @escaping @Sendable (Int) -> TestReply) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw TestServerError(message: "socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && listen(descriptor, 128) == 0
                    && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw TestServerError(message: "bind/listen failed: errno \(errno)")
        }
        self.listener = descriptor
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.handler = handler
        let thread = try Self.spawn { [self] in acceptLoop() }
        acceptThread.withLock { $0 = thread }
    }

    /// Stops accepting, ends every connection, and joins every thread. Idempotent.
    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if let thread = acceptThread.withLock({ $0 }) { pthread_join(thread, nil) }
        // The accept loop has ended, so no thread is added after this.
        for thread in threads.withLock({ $0 }) { pthread_join(thread, nil) }
        close(listener)
    }

    // MARK: - Threads

    private func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            guard Self.waitReadable(listener) else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            do {
                let thread = try Self.spawn { [self] in serve(client) }
                threads.withLock { $0.append(thread) }
            } catch {
                close(client)
            }
        }
    }

    private func serve(_ client: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var open = true
        while open, !stopping.load(ordering: .acquiring) {
            if let length = Self.requestLength(buffer) {
                buffer.removeFirst(length)
                let number = served.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
                open = reply(handler(number), on: client)
                continue
            }
            guard Self.waitReadable(client) else { continue }
            let count = recv(client, &chunk, chunk.count, 0)
            if count <= 0 { break }
            buffer.append(contentsOf: chunk[0..<count])
        }
        close(client)
    }

    /// Acts out `reply`; returns whether the connection stays open.
    private func reply(_ reply: TestReply, on client: Int32) -> Bool {
        switch reply {
        case .respond(let status, let headers, let body):
            var head = "HTTP/1.1 \(status) Test\r\nContent-Length: \(body.utf8.count)\r\n"
            for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
            return Self.sendAll(client, head + "\r\n" + body)
        case .raw(let text):
            return Self.sendAll(client, text)
        case .rawThenClose(let text):
            _ = Self.sendAll(client, text)
            return false
        case .reset:
            // Linger 0 turns close() into an RST.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            return false
        case .hang:
            var byte: UInt8 = 0
            while !stopping.load(ordering: .acquiring) {
                guard Self.waitReadable(client) else { continue }
                if recv(client, &byte, 1, 0) <= 0 { break }
            }
            return false
        }
    }

    // MARK: - Helpers

    /// Waits up to 20 ms for `descriptor` to be readable.
    private static func waitReadable(_ descriptor: Int32) -> Bool {
        var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&probe, 1, 20) > 0
    }

    private static func sendAll(_ descriptor: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    /// Length of the first complete request in `buffer` (head and
    /// Content-Length body), or nil.
    private static func requestLength(_ buffer: [UInt8]) -> Int? {
        let terminator: [UInt8] = [13, 10, 13, 10]
        guard buffer.count >= 4,
              let end = (0...(buffer.count - 4)).first(where: { buffer[$0..<($0 + 4)].elementsEqual(terminator) })
        else { return nil }
        let head = String(decoding: buffer[0..<end], as: UTF8.self).lowercased()
        var bodyLength = 0
        for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
            bodyLength = Int(line.dropFirst("content-length:".count).filter { $0 != " " }) ?? 0
        }
        let total = end + 4 + bodyLength
        return buffer.count >= total ? total : nil
    }

    /// Runs `body` on a new joinable thread.
    private static func spawn(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
        final class Box {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw TestServerError(message: "pthread_create failed: \(result)")
        }
        return thread
    }
}

/// The test server could not start.
struct TestServerError: Error {
    var message: String
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
func unusedPort() throws -> Int {
    let server = try TestHTTPServer { _ in .hang }
    let port = server.port
    server.stop()
    return port
}
