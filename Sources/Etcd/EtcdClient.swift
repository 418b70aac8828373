#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A client of an etcd v3 cluster through its gRPC gateway's JSON (`/v3/…`, as etcd
/// 3.4 serves it beside gRPC on every client URL), over async-http-client.
///
/// The client tries the endpoints in turn and sticks to the one that answered. A call
/// moves on to the next member when one cannot take it: the connection is refused,
/// the member has no leader (every call asks for one, see
/// `EtcdConfiguration.requireLeader`) or says it is unavailable; it keeps going round
/// the members for at most `timeouts.failover`. A call that was sent but got no answer
/// is retried elsewhere only when repeating it is harmless (reads, status, lease
/// keep-alives); a write that got no answer fails as `EtcdError.timeout`, since it may
/// have been applied.
///
/// Errors are `EtcdError`s: HTTP statuses never reach the caller. Call `shutdown()`
/// when done (the client's connections close then).
public final class EtcdClient: Sendable {
    /// How this client reaches the cluster.
    public let configuration: EtcdConfiguration
    let http: HTTPClient
    private let state: Mutex<State>

    private struct State {
        /// The endpoint that answered last: the first one tried by the next call.
        var preferred = 0
        var shutDown = false
        /// The member id each endpoint answered with last (from answers' headers).
        var memberIDs: [Int: UInt64] = [:]
        /// The auth token for `configuration.credentials`, once authenticated.
        var token: String?
    }

    /// The largest answer read (a range of many large values).
    static let maximumAnswerBytes = 256 << 20

    /// A client of the cluster at `configuration.endpoints`; throws
    /// `EtcdError.invalid` when there are none or the TLS files cannot be read.
    public init(configuration: EtcdConfiguration) throws(EtcdError) {
        guard !configuration.endpoints.isEmpty else { throw .invalid(message: "no etcd endpoint given") }
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: configuration.timeouts.connect.timeAmount, read: nil)
        // Each watch holds a connection of its own (HTTP/1.1 streams one answer per
        // connection), so the pool's default of 8 per member would queue calls.
        settings.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        // A member that refuses connections must fail the call at once so that the
        // next member is tried, not be retried until the call's deadline.
        settings.connectionPool.retryConnectionEstablishment = false
        settings.httpVersion = .http1Only
        settings.redirectConfiguration = .disallow
        settings.decompression = .disabled
        if let tls = configuration.tls {
            settings.tlsConfiguration = try Self.tlsConfiguration(tls)
        }
        self.configuration = configuration
        self.http = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: settings)
        self.state = Mutex(State())
    }

    /// A client of the cluster at `endpoints` (`http://127.0.0.1:2379`, …).
    public convenience init(
        endpoints: [String], tls: EtcdTLS? = nil, credentials: EtcdCredentials? = nil, timeouts: EtcdConfiguration.Timeouts = .init()
    ) throws(EtcdError) {
        try self.init(configuration: EtcdConfiguration(endpoints: endpoints, tls: tls, credentials: credentials, timeouts: timeouts))
    }

    /// Closes the client's connections; every call after this fails as
    /// `EtcdError.shutDown`, and open watches end.
    public func shutdown() async {
        let first = state.withLock { state in
            defer { state.shutDown = true }
            return !state.shutDown
        }
        if first { try? await http.shutdown() }
    }

    deinit {
        // The HTTP client insists on being shut down; a client dropped without
        // `shutdown()` closes its connections in the background.
        let shutDown = state.withLock { $0.shutDown }
        if !shutDown { http.shutdown { _ in } }
    }

    /// The endpoint the next call tries first: the one that answered last.
    public var currentEndpoint: URL {
        configuration.endpoints[state.withLock { $0.preferred }]
    }

    private static func tlsConfiguration(_ tls: EtcdTLS) throws(EtcdError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        do {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tls.caFile))
            if let certificateFile = tls.certificateFile {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            }
            if let keyFile = tls.keyFile {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
        } catch {
            throw .invalid(message: "cannot read the TLS files (CA \(tls.caFile), certificate \(tls.certificateFile ?? "none"), key \(tls.keyFile ?? "none")): \(error)")
        }
        return configuration
    }

    // MARK: Calls

    /// Whether a call may be sent again to another member after it was sent to one
    /// that did not answer.
    enum Repeat {
        /// Reads and anything else that does the same the second time.
        case harmless
        /// Writes: a second try could apply it twice.
        case once
    }

    /// Sends one call to the members in turn, as described on the type, and decodes
    /// its answer.
    func call<Body: Encodable, Answer: Decodable>(
        _ path: String, _ body: Body, as answer: Answer.Type, repeat: Repeat, requireLeader: Bool? = nil
    ) async throws(EtcdError) -> Answer {
        guard configuration.credentials != nil else {
            return try await callMembers(path, body, as: answer, repeat: `repeat`, requireLeader: requireLeader)
        }
        try await ensureToken()
        do {
            return try await callMembers(path, body, as: answer, repeat: `repeat`, requireLeader: requireLeader)
        } catch .authFailed(let message) where message.contains("invalid auth token") {
            // Simple tokens expire (`--auth-token-ttl`, 5 minutes) and die with the
            // member that made them: get a new one and try once more. The call was
            // refused before it was applied, so sending it again is safe.
            clearToken()
            try await ensureToken()
            return try await callMembers(path, body, as: answer, repeat: `repeat`, requireLeader: requireLeader)
        }
    }

    /// Forgets the token (it expired), so that the next call authenticates again.
    func clearToken() {
        state.withLock { $0.token = nil }
    }

    /// Gets a token for `configuration.credentials` unless the client has one.
    func ensureToken() async throws(EtcdError) {
        guard let credentials = configuration.credentials, state.withLock({ $0.token == nil }) else { return }
        let answer = try await callMembers(
            "/v3/auth/authenticate", WireAuthenticateRequest(name: credentials.user, password: credentials.password),
            as: WireAuthenticate.self, repeat: .harmless, requireLeader: nil)
        state.withLock { $0.token = answer.token }
    }

    private func callMembers<Body: Encodable, Answer: Decodable>(
        _ path: String, _ body: Body, as answer: Answer.Type, repeat: Repeat, requireLeader: Bool?
    ) async throws(EtcdError) -> Answer {
        let bytes = try Self.encode(body)
        let deadline = ContinuousClock.now + configuration.timeouts.failover
        let endpoints = configuration.endpoints
        var failures: [Int: String] = [:]
        var onlyNoLeader = true
        var backoff = Duration.milliseconds(50)
        // Members this call found unreachable: a write is not handed to a member that
        // still follows one of them (see `leaderIsReachable`).
        var unreachable = Set<UInt64>()
        while true {
            let start = try preferredIndex()
            for step in 0..<endpoints.count {
                let index = (start + step) % endpoints.count
                let endpoint = endpoints[index]
                if `repeat` == .once, !unreachable.isEmpty {
                    if let reason = await leaderIsUnreachable(at: index, unreachable: unreachable) {
                        failures[index] = reason
                        continue
                    }
                }
                let outcome = await attempt(endpoint, path, bytes, requireLeader: requireLeader ?? configuration.requireLeader)
                switch outcome {
                case .answer(let data):
                    prefer(index)
                    let decoded: Answer
                    do {
                        decoded = try JSONDecoder().decode(Answer.self, from: data)
                    } catch {
                        throw .invalid(message: "\(endpoint.absoluteString)\(path) answered what the client cannot read: \(error)")
                    }
                    remember(index, decoded)
                    return decoded
                case .refused(let error):
                    switch error.meaning(at: endpoint.absoluteString) {
                    case .final(let failure):
                        prefer(index)
                        throw failure
                    case .tryAnotherMember(let failure):
                        // "No leader" is refused before the write is proposed; any other
                        // "unavailable" may come after, so a write is not sent twice.
                        if failure != .noLeader {
                            guard `repeat` == .harmless else {
                                prefer((index + 1) % endpoints.count)
                                throw failure
                            }
                            onlyNoLeader = false
                        }
                        failures[index] = failure.description
                    }
                case .notSent(let reason):
                    onlyNoLeader = false
                    failures[index] = reason
                    if let member = state.withLock({ $0.memberIDs[index] }) { unreachable.insert(member) }
                case .noAnswer(let reason):
                    // The member got the call and did not answer: a stopped member, or a
                    // connection cut mid-call. The next call starts at the next member.
                    prefer((index + 1) % endpoints.count)
                    guard `repeat` == .harmless else {
                        throw .timeout(endpoint: endpoint.absoluteString)
                    }
                    onlyNoLeader = false
                    failures[index] = reason
                case .cancelled:
                    throw .cancelled
                }
            }
            backoff = try await Self.waitForNextRound(
                failures: failures, endpoints: endpoints, onlyNoLeader: onlyNoLeader, backoff: backoff, deadline: deadline)
        }
    }

    /// Sends one call to the member at `endpoint` only (a member's own status).
    func call<Body: Encodable, Answer: Decodable>(
        _ path: String, _ body: Body, as answer: Answer.Type, at endpoint: URL, requireLeader: Bool
    ) async throws(EtcdError) -> Answer {
        _ = try preferredIndex()
        let outcome = await attempt(endpoint, path, try Self.encode(body), requireLeader: requireLeader)
        switch outcome {
        case .answer(let data):
            let decoded: Answer
            do {
                decoded = try JSONDecoder().decode(Answer.self, from: data)
            } catch {
                throw .invalid(message: "\(endpoint.absoluteString)\(path) answered what the client cannot read: \(error)")
            }
            if let index = configuration.endpoints.firstIndex(of: endpoint) { remember(index, decoded) }
            return decoded
        case .refused(let error):
            switch error.meaning(at: endpoint.absoluteString) {
            case .final(let failure), .tryAnotherMember(let failure):
                throw failure
            }
        case .notSent(let reason), .noAnswer(let reason):
            throw .unavailable([.init(endpoint: endpoint.absoluteString, reason: reason)])
        case .cancelled:
            throw .cancelled
        }
    }

    /// Notes which member answered at endpoint `index`.
    private func remember(_ index: Int, _ answer: some Decodable) {
        guard let header = (answer as? any HeaderCarrying)?.answerHeader, header.memberID != 0 else { return }
        state.withLock { $0.memberIDs[index] = header.memberID }
    }

    /// Why the member at `index` should not take a write now, or nil when it may.
    ///
    /// A write sent to a follower whose leader just died is forwarded to the dead
    /// leader and lost: the follower answers "request timed out" only after its own
    /// timeout, and the write may or may not be applied later. When this call found a
    /// member unreachable, a write therefore goes only to a member whose leader is
    /// another one (asked with a status call, which costs a millisecond); until the
    /// election ends, the call waits as it does for "no leader".
    private func leaderIsUnreachable(at index: Int, unreachable: Set<UInt64>) async -> String? {
        let endpoint = configuration.endpoints[index]
        let outcome = await attempt(endpoint, "/v3/maintenance/status", Data("{}".utf8), requireLeader: false)
        guard case .answer(let data) = outcome, let status = try? JSONDecoder().decode(WireStatus.self, from: data).status else {
            return "no status answer before a write"
        }
        state.withLock { $0.memberIDs[index] = status.header.memberID }
        if status.leader == 0 { return EtcdError.noLeader.description }
        if unreachable.contains(status.leader) {
            return "its leader \(String(status.leader, radix: 16)) is unreachable; waiting for an election"
        }
        return nil
    }

    func preferredIndex() throws(EtcdError) -> Int {
        let (index, shutDown) = state.withLock { ($0.preferred, $0.shutDown) }
        if shutDown { throw .shutDown }
        return index
    }

    func prefer(_ index: Int) {
        state.withLock { $0.preferred = index }
    }

    static func encode(_ body: some Encodable) throws(EtcdError) -> Data {
        do {
            return try JSONEncoder().encode(body)
        } catch {
            throw .invalid(message: "cannot encode the request: \(error)")
        }
    }

    /// What one try at one member came to.
    enum Outcome {
        /// A 200 and its body.
        case answer(Data)
        /// etcd answered an error.
        case refused(GatewayError)
        /// The call never reached the member (connection refused, connect timeout,
        /// TLS handshake failed): safe to send elsewhere.
        case notSent(String)
        /// The call was sent and no answer came (timeout, connection closed).
        case noAnswer(String)
        /// The calling task was cancelled.
        case cancelled
    }

    private func attempt(_ endpoint: URL, _ path: String, _ body: Data, requireLeader: Bool) async -> Outcome {
        let request = makeRequest(endpoint, path, body, requireLeader: requireLeader)
        do {
            let response = try await http.execute(request, timeout: configuration.timeouts.request.timeAmount)
            let buffer = try await response.body.collect(upTo: Self.maximumAnswerBytes)
            let data = Data(buffer: buffer)
            if response.status == .ok { return .answer(data) }
            return .refused(Self.gatewayError(status: response.status, body: data))
        } catch {
            if Task.isCancelled { return .cancelled }
            return Self.classify(error)
        }
    }

    func makeRequest(_ endpoint: URL, _ path: String, _ body: Data, requireLeader: Bool) -> HTTPClientRequest {
        var base = endpoint.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        if requireLeader {
            // grpc-gateway turns `Grpc-Metadata-X` headers into gRPC metadata `x`;
            // etcd's interceptors read `hasleader`.
            request.headers.add(name: "grpc-metadata-hasleader", value: "true")
        }
        if let token = state.withLock({ $0.token }) {
            // The gateway passes `Authorization` on as the gRPC metadata `token`.
            request.headers.add(name: "authorization", value: token)
        }
        request.body = .bytes(ByteBuffer(data: body))
        return request
    }

    /// An error answer read: `{"error": "…", "message": "…", "code": N}` for a call,
    /// `{"error": {"grpc_code": N, "message": "…"}}` when a stream fails at its start.
    static func gatewayError(status: HTTPResponseStatus, body: Data) -> GatewayError {
        struct Unary: Decodable {
            var code: Int?
            var message: String?
            var error: String?
        }
        struct Stream: Decodable {
            var error: WireStreamItem<WireEmptyAnswer>.StreamError
        }
        if let unary = try? JSONDecoder().decode(Unary.self, from: body), let code = unary.code {
            return GatewayError(code: code, message: unary.message ?? unary.error ?? "")
        }
        if let stream = try? JSONDecoder().decode(Stream.self, from: body) {
            return GatewayError(code: stream.error.code, message: stream.error.message)
        }
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        if text.contains("CommonName of client") {
            // etcd 3.4's gateway cannot pass a certificate's CN on as the user, so once
            // auth is on it refuses (400, plain text) every certificate that has one.
            return GatewayError(
                code: GatewayError.Code.unauthenticated,
                message: "etcd's gateway refuses client certificates with a CN once auth is enabled (the CN cannot be the user through it): use a certificate without a CN and a user with a password (\(text.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        // Not etcd's JSON (a proxy in between?): keep the status, which says
        // "unavailable" for a 502-504, so that the next member is tried.
        let code = (502...504).contains(Int(status.code)) ? GatewayError.Code.unavailable : 2
        return GatewayError(code: code, message: "HTTP \(status.code) \(text)")
    }

    static func classify(_ error: any Error) -> Outcome {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout, .getConnectionFromPoolTimeout:
                return .notSent("connect timed out")
            case .deadlineExceeded, .readTimeout:
                return .noAnswer("no answer in time")
            case .remoteConnectionClosed:
                return .noAnswer("the connection closed before the answer")
            case .cancelled:
                return .cancelled
            default:
                return .noAnswer("\(error)")
            }
        }
        if error is NIOConnectionError || error is NIOSSLError {
            return .notSent("\(error)")
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return .notSent("connect timed out")
        }
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH:
                return .notSent(String(cString: strerror(error.errnoCode)))
            default:
                return .noAnswer("\(error)")
            }
        }
        if error is CancellationError { return .cancelled }
        return .noAnswer("\(error)")
    }
}

/// An empty `result` (only errors are read from a failed stream's answer).
struct WireEmptyAnswer: Decodable {}

extension Duration {
    /// The same span for NIO.
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension EtcdClient {
    /// Every member refused a round of a call: past `deadline` the call fails (with
    /// `noLeader` when that was every member's answer, else `unavailable` naming each
    /// member and its reason); before it, waits `backoff` and answers the next one.
    static func waitForNextRound(
        failures: [Int: String], endpoints: [URL], onlyNoLeader: Bool, backoff: Duration, deadline: ContinuousClock.Instant
    ) async throws(EtcdError) -> Duration {
        if ContinuousClock.now + backoff >= deadline {
            if onlyNoLeader { throw .noLeader }
            throw .unavailable(
                failures.sorted { $0.key < $1.key }.map { EtcdError.EndpointFailure(endpoint: endpoints[$0.key].absoluteString, reason: $0.value) })
        }
        do {
            try await Task.sleep(for: backoff)
        } catch {
            throw .cancelled
        }
        return min(backoff * 2, .milliseconds(500))
    }
}
