import NIOCore
import NIOPosix

/// Keep-alive connections from one event loop to one pool port (`127.0.0.1:PORT`).
///
/// A request takes the most recently used idle connection (the warmest, and the
/// least likely to have been closed by the worker meanwhile), or opens a new one:
/// under concurrency the pool grows to as many connections as requests in flight.
/// Back from a request, a connection is kept idle up to `maxIdleUpstreamConnections`;
/// past that it is closed.
final class UpstreamPool {
    let port: Int
    unowned let context: LoopContext
    private let address: SocketAddress?
    /// Idle connections, the most recently used last.
    private var idle: [UpstreamConnection] = []

    init(port: Int, context: LoopContext) {
        self.port = port
        self.context = context
        self.address = try? SocketAddress(ipAddress: "127.0.0.1", port: port)
    }

    /// Gives `client` a connection: an idle one unless `fresh`, else a new one. The
    /// client hears back through `UpstreamConnection.begin` or `upstreamConnectFailed`.
    func acquire(for client: ClientConnectionHandler, fresh: Bool) {
        if !fresh {
            while let connection = idle.popLast() {
                guard connection.isUsable else { continue }
                context.stats.upstreamConnectionsReused += 1
                connection.begin(client, reused: true)
                return
            }
        }
        connect(for: client)
    }

    /// Takes back a connection whose response ended cleanly.
    func release(_ connection: UpstreamConnection) {
        if idle.count < context.options.maxIdleUpstreamConnections && !context.draining {
            idle.append(connection)
        } else {
            connection.close()
        }
    }

    /// Forgets a connection that closed.
    func forget(_ connection: UpstreamConnection) {
        if let index = idle.lastIndex(where: { $0 === connection }) {
            idle.remove(at: index)
        }
    }

    /// Closes every idle connection.
    func closeIdle() {
        let connections = idle
        idle.removeAll()
        for connection in connections { connection.close() }
    }

    private func connect(for client: ClientConnectionHandler) {
        guard let address else {
            client.upstreamConnectFailed(port: port, reason: "127.0.0.1:\(port) is not an address")
            return
        }
        context.stats.upstreamConnectionsOpened += 1
        let connection = UpstreamConnection(pool: self)
        let bound = NIOLoopBound(connection, eventLoop: context.eventLoop)
        let port = self.port
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(context.options.upstreamConnectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(bound.value)
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success:
                    if client.isWaitingForUpstream {
                        connection.begin(client, reused: false)
                    } else {
                        // The client went away while this connected: keep it for the next.
                        connection.markIdle()
                        release(connection)
                    }
                case .failure(let error):
                    client.upstreamConnectFailed(port: port, reason: Self.describe(error))
                }
            }
    }

    /// A connect failure in a person's words.
    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError {
            return error.description
        }
        if error is ChannelError, case .connectTimeout(let amount) = error as? ChannelError {
            return "no answer within \(amount.nanoseconds / 1_000_000) ms"
        }
        return "\(error)"
    }
}

@available(*, unavailable)
extension UpstreamPool: Sendable {}
