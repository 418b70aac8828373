import BulkheadCore
import Foundation
import NIOCore
import NIOHTTP1
import UnixHTTP

/// The control plane's typed way to the host agent: the host routes of
/// `DATA/run/admin.sock`, with their Codable bodies. What only the host knows (its
/// status, a script's log lines, its quarantines) is asked here, within a short
/// deadline: an agent that does not answer is `host-unavailable`, never a wait.
public struct HostClient: Sendable {
    let client: UnixHTTPClient
    /// Longest a question to the agent may take.
    public var deadline: TimeAmount

    /// A client of the agent serving `data`'s admin.sock.
    public init(data: DataDirectory, deadline: TimeAmount = .seconds(2)) {
        client = UnixHTTPClient(socketPath: data.adminSocket)
        self.deadline = deadline
    }

    /// The host at a glance.
    public func status() async throws(ControlError) -> HostStatus {
        try await call(.GET, "/v1/host/status", as: HostStatus.self)
    }

    /// A script's recent log lines on this host.
    public func logs(customer: String, name: String) async throws(ControlError) -> LogLines {
        try await call(.GET, "/v1/host/scripts/\(Self.segment(customer))/\(Self.segment(name))/logs", as: LogLines.self)
    }

    /// Releases a quarantined script on this host.
    public func releaseQuarantine(customer: String, name: String) async throws(ControlError) -> Released {
        try await call(.POST, "/v1/host/scripts/\(Self.segment(customer))/\(Self.segment(name))/unquarantine", as: Released.self)
    }

    /// The host's `/metrics` text (Prometheus), as the agent renders it.
    public func metricsText() async throws(ControlError) -> String {
        try await exchange(.GET, "/v1/host/metrics").text
    }

    private func call<Body: Decodable>(_ method: HTTPMethod, _ uri: String, as type: Body.Type) async throws(ControlError) -> Body {
        let answer = try await exchange(method, uri)
        guard let body = try? JSONDecoder().decode(type, from: answer.body) else {
            throw ControlError(.internal, "the host agent sent an answer this build cannot read: \(answer.text.prefix(200))")
        }
        return body
    }

    private func exchange(_ method: HTTPMethod, _ uri: String) async throws(ControlError) -> UnixHTTPClient.Answer {
        let answer: UnixHTTPClient.Answer
        do {
            answer = try await client.send(method, uri, timeout: deadline)
        } catch {
            throw ControlError(.hostUnavailable, "the host agent (bulkhead serve) did not answer on \(client.socketPath): \(error)")
        }
        guard answer.succeeded else {
            // The agent's refusal, kind and message as it sent them.
            if let refusal = try? JSONDecoder().decode(ErrorBody.self, from: answer.body) {
                throw ControlError(ControlError.Kind(rawValue: refusal.error) ?? .internal, refusal.message)
            }
            throw ControlError(.hostUnavailable, "the host agent answered \(answer.status)")
        }
        return answer
    }

    /// A path segment as a URL carries it (names are checked by the agent).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}
