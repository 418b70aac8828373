#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import BulkheadCore
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// HTTP over a Unix socket of this user: `DATA/run/control.sock` (the control
/// router) and `DATA/run/admin.sock` (the host routes). Neither takes a token: the
/// server checks the peer's uid, and this client checks the server's before it
/// sends anything. The CLI and the control plane (asking the host agent) both use it.
public struct UnixHTTPClient: Sendable {
    /// A request reached no server, or one of another user, or got no answer in time.
    public struct Unreachable: Error, CustomStringConvertible, Sendable {
        /// What happened, for a person.
        public var description: String

        /// An unreachable server, described.
        public init(description: String) {
            self.description = description
        }
    }

    /// One answer: its status and body as sent.
    public struct Answer: Sendable {
        /// The HTTP status code.
        public var status: UInt
        /// The body.
        public var body: Data

        /// Whether the status is 2xx.
        public var succeeded: Bool { (200..<300).contains(status) }

        /// The body as text.
        public var text: String { String(decoding: body, as: UTF8.self) }

        /// An answer, as a server sent it.
        public init(status: UInt, body: Data) {
            self.status = status
            self.body = body
        }
    }

    /// The socket this client talks to.
    public let socketPath: String

    /// A client of the server on `socketPath`.
    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// Sends one request and waits for the answer at most `timeout`; throws
    /// `Unreachable` when no server of this user answers in time. Blocks the caller.
    public func send(_ method: HTTPMethod, _ uri: String, body: Data? = nil, timeout: TimeAmount = .seconds(30)) throws(Unreachable) -> Answer {
        try checkPeer()
        let request = try makeRequest(method, uri, body: body)
        do {
            let response = try HTTPClient.shared.execute(request: request, deadline: .now() + timeout).wait()
            return Answer(status: response.status.code, body: response.body.map { Data(buffer: $0) } ?? Data())
        } catch {
            throw Unreachable(description: "\(error)")
        }
    }

    /// Sends one request without blocking a thread while it waits.
    public func send(_ method: HTTPMethod, _ uri: String, body: Data? = nil, timeout: TimeAmount = .seconds(30)) async throws(Unreachable) -> Answer {
        try checkPeer()
        let request = try makeRequest(method, uri, body: body)
        do {
            let response = try await HTTPClient.shared.execute(request: request, deadline: .now() + timeout).get()
            return Answer(status: response.status.code, body: response.body.map { Data(buffer: $0) } ?? Data())
        } catch {
            throw Unreachable(description: "\(error)")
        }
    }

    /// Whoever answers must be us: a socket another user swapped in (into a run/
    /// left open to them) gets no command, break glass included. (A connection of
    /// our own, closed before the request: the server's side checks the other way.)
    private func checkPeer() throws(Unreachable) {
        do {
            let fd = try Sockets.connectUnix(path: socketPath)
            defer { close(fd) }
            let peer = try Sockets.peerUID(of: fd)
            guard peer == geteuid() else {
                throw Unreachable(description: "\(socketPath) is served by uid \(peer), not by you (uid \(geteuid())); refusing to send it a command")
            }
        } catch let error as Unreachable {
            throw error
        } catch {
            throw Unreachable(description: "\(error)")
        }
    }

    private func makeRequest(_ method: HTTPMethod, _ uri: String, body: Data?) throws(Unreachable) -> HTTPClient.Request {
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw Unreachable(description: "cannot make a URL of \(socketPath) and \(uri)")
        }
        do {
            var request = try HTTPClient.Request(url: url, method: method)
            if let body {
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .data(body)
            }
            return request
        } catch {
            throw Unreachable(description: "\(error)")
        }
    }
}
