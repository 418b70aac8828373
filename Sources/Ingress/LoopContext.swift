#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Everything one event loop of the ingress owns: its copy of the routing table, its
/// upstream connection pools, its counters and its client connections. Confined to
/// that loop, so none of it is locked: a request is served start to end on the loop
/// its client connection lives on.
final class LoopContext {
    let eventLoop: any EventLoop
    let options: IngressOptions
    let statusLines: StatusLines
    /// `x-bulkhead-pool: ingress` and `x-bulkhead-worker: PID`, on the ingress's own
    /// answers: every data-plane response says who answered it.
    let identityHeaders: [UInt8]
    /// The ingress's own port: a pool said to listen there is refused, not looped to.
    let ownPort: Int?
    /// The table in force here; nil until the first one loads.
    var routes: RoutingTable? {
        didSet { maxBodyBytes = routes?.largestMaxBodyBytes ?? options.parserLimits.maxBodyBytes }
    }
    /// The largest body a request may have before its pool is known: the largest
    /// pool's limit, or the ingress's own when the table gives none. Kept here so a
    /// request reads an integer, not the table.
    private(set) var maxBodyBytes: Int
    var stats = IngressStats()
    private(set) var draining = false

    private let requestIDPrefix: String
    private var nextRequestID: UInt64 = 0
    private var pools: [Int: UpstreamPool] = [:]
    private var clients: [ObjectIdentifier: ClientConnectionHandler] = [:]
    private var onDrained: (() -> Void)?

    init(eventLoop: any EventLoop, options: IngressOptions, statusLines: StatusLines, ownPort: Int?) {
        self.eventLoop = eventLoop
        self.ownPort = ownPort
        self.options = options
        self.maxBodyBytes = options.parserLimits.maxBodyBytes
        self.statusLines = statusLines
        let pid = getpid()
        self.identityHeaders = Array("x-bulkhead-pool: ingress\r\nx-bulkhead-worker: \(pid)\r\n".utf8)
        self.requestIDPrefix = "ingress-\(pid)-"
    }

    /// An id for an answer the ingress writes itself.
    func requestID() -> String {
        nextRequestID &+= 1
        return requestIDPrefix + String(nextRequestID)
    }

    /// The pool of connections to `127.0.0.1:port` on this loop.
    func pool(port: Int) -> UpstreamPool {
        if let pool = pools[port] { return pool }
        let pool = UpstreamPool(port: port, context: self)
        pools[port] = pool
        return pool
    }

    // MARK: - Clients and draining

    func clientOpened(_ client: ClientConnectionHandler) {
        clients[ObjectIdentifier(client)] = client
        stats.clientConnections += 1
        stats.openClientConnections += 1
    }

    func clientClosed(_ client: ClientConnectionHandler) {
        guard clients.removeValue(forKey: ObjectIdentifier(client)) != nil else { return }
        stats.openClientConnections -= 1
        if draining { finishDrainIfDone() }
    }

    /// Stops serving: idle client connections close now, busy ones after their
    /// response; `onDrained` runs once none is left (and the idle upstream
    /// connections are closed).
    func beginDrain(onDrained: @escaping () -> Void) {
        guard !draining else { return }
        draining = true
        self.onDrained = onDrained
        for client in Array(clients.values) { client.closeIfIdle() }
        finishDrainIfDone()
    }

    /// Closes every client connection at once (the drain ran out of time).
    func closeAll() {
        for client in Array(clients.values) { client.closeNow() }
        for pool in pools.values { pool.closeIdle() }
    }

    private func finishDrainIfDone() {
        guard clients.isEmpty, let done = onDrained else { return }
        onDrained = nil
        for pool in pools.values { pool.closeIdle() }
        done()
    }
}

@available(*, unavailable)
extension LoopContext: Sendable {}
