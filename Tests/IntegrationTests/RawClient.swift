#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation

/// A raw TCP client for malformed HTTP: sends bytes exactly as given (no framing of
/// its own) and reads what comes back, telling a close by the server from a timeout.
final class RawClient {
    let fd: Int32
    /// Everything received so far.
    private(set) var received: [UInt8] = []
    /// The server closed the connection (EOF or reset).
    private(set) var closed = false

    /// Connects to 127.0.0.1:`port`; nil when the connection is refused.
    init?(port: Int) {
        // Generous timeouts: reads here poll without waiting; a blocked send ends.
        guard let fd = connectLoopback(port: port, timeout: 30) else { return nil }
        self.fd = fd
    }

    /// Takes over a connected socket (given timeouts like `init(port:)`'s).
    init(adopting fd: Int32) {
        Sockets.setTimeouts(fd, seconds: 30)
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    /// Sends every byte; false once the server has gone.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == EINTR { continue }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool {
        send(Array(text.utf8))
    }

    /// Reads what is there now, without waiting. Notes a close.
    func poll() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !closed {
            let count = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                received.append(contentsOf: chunk[0..<count])
            } else if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                closed = true
            } else {
                return
            }
        }
    }

    /// Reads until the server closes the connection or `timeout` passes.
    @discardableResult
    func readUntilClose(timeout: Double = 5) -> (text: String, closed: Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while !closed && Date() < deadline {
            poll()
            if !closed { usleep(2_000) }
        }
        return (text, closed)
    }

    /// Reads until `count` complete responses (status lines) are in, the server
    /// closes, or `timeout` passes.
    func readResponses(_ count: Int, timeout: Double = 5) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        while !closed && Date() < deadline && Self.statusLines(text).count < count {
            poll()
            if !closed { usleep(2_000) }
        }
        return Self.statusLines(text)
    }

    /// The status codes of the responses in `text`, in order.
    static func statusLines(_ text: String) -> [String] {
        text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
    }

    /// One request on a fresh connection: everything the server sent back until it
    /// closed, and whether it did.
    static func exchange(port: Int, _ request: String, timeout: Double = 5) -> (text: String, closed: Bool) {
        exchange(port: port, Array(request.utf8), timeout: timeout)
    }

    static func exchange(port: Int, _ request: [UInt8], timeout: Double = 5) -> (text: String, closed: Bool) {
        guard let client = RawClient(port: port) else { return ("connection refused", false) }
        client.send(request)
        return client.readUntilClose(timeout: timeout)
    }
}
