#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AsyncHTTPClient
import BulkheadCore
import ControlAPI
import Foundation
import NIOCore
import NIOHTTP1

/// The CLI's way to a running host: HTTP over `DATA/run/control.sock` for the control
/// routes (`/v1/admin/…`, the same router as TCP) and over `DATA/run/admin.sock` for
/// the host routes (`/v1/host/…`). Neither needs a token: the server checks the
/// peer's uid. Answers are the API's Codable bodies.
struct APIClient {
    /// Which socket a route is served on.
    enum Socket {
        /// The control API (`control.sock`).
        case control
        /// The host agent (`admin.sock`).
        case host
    }

    /// A request reached no server, or one of another user.
    struct Unreachable: Error, CustomStringConvertible {
        var description: String
    }

    /// One answer: its status and body as sent.
    struct Answer {
        var status: UInt
        var body: Data

        var succeeded: Bool { (200..<300).contains(status) }
    }

    let data: DataDirectory

    init(data: String) {
        self.data = DataDirectory(data)
    }

    func path(of socket: Socket) -> String {
        socket == .control ? data.controlSocket : data.adminSocket
    }

    /// Sends one request; throws `Unreachable` when no server of this user answers.
    func send(_ method: HTTPMethod, _ uri: String, body: Data? = nil, to socket: Socket, timeout: Int64 = 30) throws -> Answer {
        let socketPath = path(of: socket)
        // Whoever answers must be us: a socket another user swapped in (into a run/
        // left open to them) gets no command, break glass included. (A connection of
        // our own, closed before the request: the server's side checks the other way.)
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
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw Unreachable(description: "cannot make a URL of \(socketPath) and \(uri)")
        }
        do {
            var request = try HTTPClient.Request(url: url, method: method)
            if let body {
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .data(body)
            }
            let response = try HTTPClient.shared.execute(request: request, deadline: .now() + .seconds(timeout)).wait()
            return Answer(status: response.status.code, body: response.body.map { Data(buffer: $0) } ?? Data())
        } catch {
            throw Unreachable(description: "\(error)")
        }
    }

    /// Sends one request and decodes a successful answer as `Body`; an unreachable
    /// server or a refusal is printed and ends the command with a failure.
    func call<Body: Decodable>(
        _ method: HTTPMethod, _ uri: String, body: (some Encodable)? = Optional<Empty>.none, to socket: Socket,
        as type: Body.Type, timeout: Int64 = 30
    ) throws -> (Body, Answer) {
        let answer: Answer
        do {
            answer = try send(method, uri, body: try body.map { try JSONEncoder().encode($0) }, to: socket, timeout: timeout)
        } catch {
            fail("cannot reach the supervisor at \(path(of: socket)): \(error)")
        }
        try Self.check(answer)
        guard let decoded = try? Self.decoder.decode(type, from: answer.body) else {
            fail("the supervisor sent an answer this CLI cannot read: \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
        }
        return (decoded, answer)
    }

    /// A refusal, printed as `kind: message`, ends the command with a failure.
    static func check(_ answer: Answer) throws {
        guard !answer.succeeded else { return }
        if let refusal = try? decoder.decode(ErrorBody.self, from: answer.body) {
            fail("\(refusal.error): \(refusal.message)")
        }
        fail("the supervisor answered \(answer.status): \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
    }

    /// The API's bodies: ISO 8601 dates.
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// A path segment as a URL carries it (names are checked by the server).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    /// No body.
    struct Empty: Encodable {}
}

/// Prints `bulkhead: message` on stderr and exits 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bulkhead: \(ControlCharacters.escaped(message))\n".utf8))
    Bulkhead.exit(withError: ExitCode.failure)
}

extension APIClient.Answer {
    /// The body as the API sent it, for `--json`.
    var text: String { String(decoding: body, as: UTF8.self) }
}
