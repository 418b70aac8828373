import AsyncHTTPClient
import BulkheadCore
import Foundation
import NIOCore
import NIOHTTP1

/// A real HTTP client of the host's Unix sockets (`control.sock`, `admin.sock`).
enum SocketClient {
    /// One request; nil when nothing answered.
    static func request(
        socket: String, _ method: String, _ path: String, token: String? = nil, body: [UInt8] = [], timeout: Int64 = 30
    ) -> (status: Int, body: String)? {
        guard let url = URL(httpURLWithSocketPath: socket, uri: path),
              var request = try? HTTPClient.Request(url: url, method: HTTPMethod(rawValue: method))
        else { return nil }
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if !body.isEmpty { request.body = .bytes(body) }
        guard let response = try? HTTPClient.shared.execute(request: request, deadline: .now() + .seconds(timeout)).wait() else {
            return nil
        }
        return (Int(response.status.code), response.body.map { String(buffer: $0) } ?? "")
    }
}

extension HostHarness {
    /// A call to a host route on `admin.sock`.
    func host(_ method: String, _ path: String, body: [UInt8] = []) throws -> (status: Int, body: String) {
        guard let answer = SocketClient.request(socket: data.adminSocket, method, path, body: body) else {
            throw HarnessError("no answer on \(data.adminSocket) for \(method) \(path)")
        }
        return answer
    }

    /// A call to the control router on `control.sock`.
    func control(_ method: String, _ path: String, token: String? = nil, body: [UInt8] = []) throws -> (status: Int, body: String) {
        guard let answer = SocketClient.request(socket: data.controlSocket, method, path, token: token, body: body) else {
            throw HarnessError("no answer on \(data.controlSocket) for \(method) \(path)")
        }
        return answer
    }
}
