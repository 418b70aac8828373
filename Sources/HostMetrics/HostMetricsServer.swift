import BulkheadCore
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Supervisor
import Synchronization

/// The host's own `/metrics` and `/healthz` (`bulkhead serve --metrics`): a small
/// HTTP listener on an event loop of its own, with its own connection cap, so a
/// flooded, hung or absent control API never takes the host's health with it.
///
/// Every connection gets one answer and is closed (`Connection: close`), and is
/// closed anyway `connectionDeadline` after its accept: a client can hold at most
/// `maxConnections` descriptors, for at most that long. The answer is computed off
/// the event loop (it waits for the supervisor's queue), so a slow answer never
/// stops the loop from accepting or refusing.
public final class HostMetricsServer: Sendable {
    /// Connections held at once; past it a new one is closed at once.
    public static let defaultMaxConnections = 16
    /// Seconds a connection may stay open, from its accept.
    public static let connectionDeadline: TimeAmount = .seconds(5)

    /// The port it listens on (the real one when asked for port 0).
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    private init(port: Int, group: MultiThreadedEventLoopGroup, channel: any Channel) {
        self.port = port
        self.group = group
        self.channel = channel
    }

    /// Binds `host:port` and starts serving; returns once it listens.
    ///
    /// - Throws: when the address cannot be bound (in use, not local).
    public static func start(
        host: String, port: Int, supervisor: Supervisor, maxConnections: Int = defaultMaxConnections, logger: Logger
    ) throws -> HostMetricsServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let open = Mutex(0)
        let cap = max(1, maxConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLock { count in
                    guard count < cap else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLock { $0 -= 1 } }
                channel.eventLoop.scheduleTask(in: connectionDeadline) { channel.close(promise: nil) }
                do {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false)
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(supervisor: supervisor))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel: any Channel
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        let bound = channel.localAddress?.port ?? port
        logger.info("host metrics listening", metadata: [
            "address": "\(host):\(bound)", "connection_cap": "\(cap)", "routes": "/metrics /healthz",
        ])
        return HostMetricsServer(port: bound, group: group, channel: channel)
    }

    /// Stops listening and ends the event loop.
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// What `/healthz` answers: 200 when every pool has a ready worker, else 503 with
/// the pools that have none in `unready`.
public struct HostHealth: Codable, Sendable, Equatable {
    /// `ok`, or `unavailable` when some pool has no ready worker.
    public var status: String
    /// The pools with no ready worker, in rollout order.
    public var unready: [String]
    /// Every pool.
    public var pools: [PoolReadiness]

    /// Judges the pools.
    public init(pools: [PoolReadiness]) {
        self.pools = pools
        unready = pools.filter { $0.ready == 0 }.map(\.name)
        status = unready.isEmpty ? "ok" : "unavailable"
    }

    /// Whether every pool can serve.
    public var healthy: Bool { unready.isEmpty }
}

/// One request per connection: route it, answer, close.
private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let supervisor: Supervisor
    private var head: HTTPRequestHead?
    private var answered = false

    init(supervisor: Supervisor) {
        self.supervisor = supervisor
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break
        case .end:
            guard let head, !answered else { return }
            answered = true
            let channel = context.channel
            let supervisor = supervisor
            let method = head.method, path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
            // Off the event loop: the answer waits for the supervisor's queue.
            DispatchQueue.global().async {
                let answer = Self.route(method: method, path: path, supervisor: supervisor)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: answer.contentType)
                headers.add(name: "Content-Length", value: String(answer.body.utf8.count))
                headers.add(name: "Connection", value: "close")
                channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers)),
                              promise: nil)
                channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: answer.body))), promise: nil)
                channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The answer to one request.
    static func route(method: HTTPMethod, path: String, supervisor: Supervisor)
        -> (status: HTTPResponseStatus, contentType: String, body: String)
    {
        guard method == .GET else {
            return (.methodNotAllowed, "application/json", #"{"error":"method-not-allowed","message":"only GET is served here"}"#)
        }
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4", MetricsText.render(supervisor.metricsSnapshot()))
        case "/healthz":
            let health = HostHealth(pools: supervisor.poolReadiness())
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let body = (try? String(decoding: encoder.encode(health), as: UTF8.self)) ?? #"{"status":"unavailable"}"#
            return (health.healthy ? .ok : .serviceUnavailable, "application/json", body)
        default:
            return (.notFound, "application/json", #"{"error":"not-found","message":"this address serves /metrics and /healthz"}"#)
        }
    }
}
