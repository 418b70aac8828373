import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Holds the control API to its `APIConnectionLimits`: performs what the
/// `APIConnectionTable` decides (closing displaced connections) for every connection
/// of the server, whichever event loop it runs on.
final class APIConnectionGuard: Sendable {
    let limits: APIConnectionLimits
    private let logger: Logger
    private let state: Mutex<State>

    private struct State {
        var table: APIConnectionTable
        var channels: [Int: any Channel] = [:]
        /// When a connection was last displaced or refused: an episode of shedding,
        /// logged once, lasts until `quietPeriod` passes without one.
        var lastShed: ContinuousClock.Instant?
    }

    /// How long the limits must go unenforced before shedding is logged again.
    static let quietPeriod = Duration.seconds(10)

    init(limits: APIConnectionLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
        state = Mutex(State(table: APIConnectionTable(maxConnections: limits.maxConnections, maxPerPeer: limits.maxPerPeer)))
    }

    /// A handler for one new connection's pipeline (after HTTP decoding).
    func makeHandler() -> APIConnectionHandler {
        APIConnectionHandler(guard: self, headTimeout: limits.headTimeout)
    }

    /// A new connection: its id, or nil when it must be closed at once.
    func open(_ channel: any Channel) -> Int? {
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let (admission, displaced, startedShedding, held) = state.withLock { state in
            let admission = state.table.open(peer: peer)
            var displaced: [any Channel] = []
            switch admission {
            case .admit(let id, let evicting):
                state.channels[id] = channel
                displaced = evicting.compactMap { state.channels.removeValue(forKey: $0) }
            case .refuse:
                break
            }
            var started = false
            if admission == .refuse || !displaced.isEmpty {
                let now = ContinuousClock.now
                started = state.lastShed.map { now - $0 > Self.quietPeriod } ?? true
                state.lastShed = now
            }
            return (admission, displaced, started, state.table.count)
        }
        // Closing is thread-safe in NIO, and done outside the lock: a close runs the
        // displaced channel's handlers, which come back here.
        for other in displaced { other.close(promise: nil) }
        if startedShedding {
            logger.warning("control API at its connection limits: closing the longest idle connections first", metadata: [
                "connections": "\(held)", "max_connections": "\(limits.maxConnections)",
                "max_per_peer": "\(limits.maxPerPeer)", "peer": "\(peer)",
            ])
        }
        guard case .admit(let id, _) = admission else { return nil }
        return id
    }

    /// A complete request head arrived on `id`.
    func requestStarted(_ id: Int) {
        state.withLock { $0.table.requestStarted(id) }
    }

    /// The answer to a request on `id` is written.
    func requestFinished(_ id: Int) {
        state.withLock { $0.table.requestFinished(id) }
    }

    /// `id` closed.
    func closed(_ id: Int) {
        state.withLock { state in
            state.table.closed(id)
            state.channels[id] = nil
        }
    }
}

/// One connection's part of the guard: registers it, tells the guard when a request
/// starts and ends, and closes it when it stays idle (no complete request head) for
/// the head timeout. Sits after the HTTP decoder, so a head counts only once whole:
/// a client that sends a byte at a time stays idle until its head is complete.
final class APIConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let connections: APIConnectionGuard
    private let headTimeout: TimeAmount
    /// The guard's id for this connection, once registered.
    private var id: Int?
    /// Requests read and not yet answered.
    private var inProgress = 0
    private var deadline: Scheduled<Void>?

    init(guard connections: APIConnectionGuard, headTimeout: Double) {
        self.connections = connections
        self.headTimeout = .nanoseconds(Int64(max(0.001, headTimeout) * 1_000_000_000))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Accepted channels usually become active after their pipeline is built;
        // register on whichever comes second.
        if context.channel.isActive { register(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        release()
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        register(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data), let id {
            inProgress += 1
            if inProgress == 1 {
                disarm()
                connections.requestStarted(id)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), let id, inProgress > 0 {
            inProgress -= 1
            if inProgress == 0 {
                connections.requestFinished(id)
                arm(context: context)
            }
        }
        context.write(data, promise: promise)
    }

    private func register(context: ChannelHandlerContext) {
        guard id == nil else { return }
        guard let admitted = connections.open(context.channel) else {
            context.close(promise: nil)
            return
        }
        id = admitted
        arm(context: context)
    }

    private func release() {
        disarm()
        guard let id else { return }
        self.id = nil
        connections.closed(id)
    }

    /// Starts the head timeout: the connection is idle from now.
    private func arm(context: ChannelHandlerContext) {
        disarm()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: headTimeout) { [self] in
            deadline = nil
            // A request that started meanwhile disarmed this; checked again in case
            // the cancel came too late.
            guard inProgress == 0 else { return }
            context.close(promise: nil)
        }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}

@available(*, unavailable)
extension APIConnectionHandler: Sendable {}
