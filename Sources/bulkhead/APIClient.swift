#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation
import NIOCore
import NIOHTTP1
import UnixHTTP

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
    typealias Unreachable = UnixHTTPClient.Unreachable
    /// One answer: its status and body as sent.
    typealias Answer = UnixHTTPClient.Answer

    let data: DataDirectory
    /// With `--etcd`: the fleet's leading control process, reached over TCP instead of
    /// the sockets (host routes are a host's own and refused).
    let fleet: FleetConnection?

    init(data: String) {
        self.data = DataDirectory(data)
        fleet = nil
    }

    /// A client of the host of `options.data`, or with `--etcd` of the fleet.
    init(_ options: ClientOptions) {
        data = DataDirectory(options.data)
        fleet = options.etcd.endpoints == nil ? nil : FleetConnection(options.etcd)
    }

    func path(of socket: Socket) -> String {
        if let fleet, socket == .control { return "http://\(fleet.leader.api) (the fleet's leader)" }
        return socket == .control ? data.controlSocket : data.adminSocket
    }

    /// Sends one request; throws `Unreachable` when no server of this user answers.
    func send(_ method: HTTPMethod, _ uri: String, body: Data? = nil, to socket: Socket, timeout: Int64 = 30) throws -> Answer {
        if let fleet {
            guard socket == .control else {
                fail("this command acts on one host: run it there with --data DIR (the fleet's view: bulkhead status --etcd URLS)")
            }
            return try fleet.send(method, uri, body: body, timeout: timeout)
        }
        return try UnixHTTPClient(socketPath: path(of: socket)).send(method, uri, body: body, timeout: .seconds(timeout))
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
            fail("cannot reach \(Self.server(socket)) at \(path(of: socket)): \(error)")
        }
        try Self.check(answer)
        guard let decoded = try? Self.decoder.decode(type, from: answer.body) else {
            fail("the supervisor sent an answer this CLI cannot read: \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
        }
        return (decoded, answer)
    }

    /// Sends one request whose success carries no body (204); an unreachable server
    /// or a refusal is printed and ends the command with a failure.
    func call(_ method: HTTPMethod, _ uri: String, to socket: Socket, timeout: Int64 = 30) throws {
        let answer: Answer
        do {
            answer = try send(method, uri, to: socket, timeout: timeout)
        } catch {
            fail("cannot reach \(Self.server(socket)) at \(path(of: socket)): \(error)")
        }
        try Self.check(answer)
    }

    /// Who serves `socket`, for messages.
    static func server(_ socket: Socket) -> String {
        socket == .control ? "bulkhead control" : "the host agent (bulkhead serve)"
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

