#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Dispatch
import NIOCore
import NIOPosix
import Synchronization

/// The ingress (`bulkhead ingress`): the optional front door that routes each
/// request to its customer's current pool, by the routing table the supervisor
/// writes. It runs no Lua and keeps routing on its last good table when the
/// supervisor is gone.
///
/// ```swift
/// let server = try IngressServer(options: IngressOptions(data: data))
/// exit(server.run())   // blocks; SIGTERM drains and returns 0
/// ```
/// Tests call `start()` and `stop()` instead of `run()`.
public final class IngressServer: Sendable {
    private enum Phase {
        /// Set up, not accepting.
        case created
        /// Accepting and serving.
        case running
        /// Not accepting; finishing what is in flight.
        case draining
        /// Done (or never started).
        case stopped
    }

    /// The options it runs with.
    public let options: IngressOptions
    private let group: MultiThreadedEventLoopGroup
    private let contexts: [NIOLoopBound<LoopContext>]
    private let watcher: RoutesWatcher
    private let acceptor: IngressAcceptor
    private let phase = Mutex(Phase.created)
    /// Loops that have not finished draining.
    private let loopsDraining = Atomic<Int>(0)
    private let drained = DispatchSemaphore(value: 0)
    private let finalStats = Mutex<IngressStats?>(nil)

    /// Sets the ingress up (threads, no connections): nothing is accepted before
    /// `start()` or `run()`.
    public init(options: IngressOptions) throws {
        guard options.eventLoopThreads >= 1 else {
            throw IngressError("eventLoopThreads is \(options.eventLoopThreads); it must be at least 1")
        }
        guard fcntl(options.listenFD, F_GETFD) >= 0 else {
            throw IngressError("descriptor \(options.listenFD) is not open: the ingress needs its listening socket there")
        }
        self.options = options
        // Its own port, never forwarded to: a table that names it would loop.
        let ownPort = try? Sockets.localPort(of: options.listenFD)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.eventLoopThreads)
        self.group = group
        let statusLines = StatusLines()
        var contexts: [NIOLoopBound<LoopContext>] = []
        var targets: [(loop: any EventLoop, bootstrap: NIOLoopBound<ClientBootstrap>)] = []
        for loop in group.makeIterator() {
            let built = try loop.submit {
                let context = LoopContext(eventLoop: loop, options: options, statusLines: statusLines, ownPort: ownPort)
                let bound = NIOLoopBound(context, eventLoop: loop)
                let bootstrap = ClientBootstrap(group: loop)
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelOption(.maxMessagesPerRead, value: 16)
                    .channelOption(.allowRemoteHalfClosure, value: true)
                    .channelOption(.writeBufferWaterMark, value: options.clientWriteBufferWaterMark)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let handler = ClientConnectionHandler(loop: bound.value, allocator: channel.allocator)
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                    }
                return (bound, NIOLoopBound(bootstrap, eventLoop: loop))
            }.wait()
            contexts.append(built.0)
            targets.append((loop: loop, bootstrap: built.1))
        }
        self.contexts = contexts
        self.acceptor = IngressAcceptor(listenFD: options.listenFD, targets: targets, log: options.log)
        let publishTo = contexts
        self.watcher = RoutesWatcher(
            path: options.routesFile, interval: options.routesPollInterval, maxFileBytes: options.maxRoutesFileBytes,
            publish: { table in
                for context in publishTo {
                    context.eventLoop.execute { context.value.routes = table }
                }
            },
            log: options.log)
    }

    // MARK: - Lifecycle

    /// Loads the routing table and starts accepting; returns at once.
    public func start() {
        let first = phase.withLock { phase -> Bool in
            guard phase == .created else { return false }
            phase = .running
            return true
        }
        guard first else { return }
        signal(SIGPIPE, SIG_IGN)
        // The first table is published before any connection is accepted: each
        // loop runs the publishing task before the first connection's.
        _ = watcher.poll()
        watcher.start()
        acceptor.start()
    }

    /// Serves until SIGTERM (or SIGINT), then drains: stops accepting, finishes the
    /// requests in flight, closes idle connections. Returns the exit status, 0.
    public func run() -> Int32 {
        start()
        let signals = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in beginDrain() }
            source.resume()
            return source
        }
        drained.wait()
        drained.signal()
        for source in signals { source.cancel() }
        shutDown()
        return 0
    }

    /// Drains as SIGTERM does and returns once the ingress has stopped. Idempotent.
    public func stop() {
        beginDrain()
        drained.wait()
        drained.signal()
        shutDown()
    }

    /// Counts summed over the event loops (after `stop()`, the final counts). Call it
    /// from outside the ingress's event loops.
    public func stats() -> IngressStats {
        if let final = finalStats.withLock({ $0 }) { return final }
        var total = IngressStats()
        for context in contexts {
            if let counts = try? context.eventLoop.submit({ context.value.stats }).wait() {
                total.add(counts)
            }
        }
        total.routesVersion = watcher.table?.version
        return total
    }

    /// The version of the routing table in force; nil before one loaded.
    public var routesVersion: Int? {
        watcher.table?.version
    }

    // MARK: - Draining

    private func beginDrain() {
        let wasRunning = phase.withLock { phase -> Bool in
            switch phase {
            case .created:
                phase = .stopped
                drained.signal()
                return false
            case .running:
                phase = .draining
                return true
            case .draining, .stopped:
                return false
            }
        }
        guard wasRunning else { return }
        loopsDraining.store(contexts.count, ordering: .relaxed)
        let timeout = options.drainTimeout
        DispatchQueue.global().async { [self] in
            // Accepting stops first, so every connection accepted is served (a
            // request it sends gets its answer, with `connection: close`).
            acceptor.stop()
            for context in contexts {
                context.eventLoop.execute { [self] in
                    context.value.beginDrain { [self] in loopDrained() }
                }
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(timeout.nanoseconds))) { [self] in
            guard phase.withLock({ $0 == .draining }) else { return }
            let open = stats().openClientConnections
            options.log("ingress: drain timed out after \(timeout.nanoseconds / 1_000_000_000) s with \(open) connections open; closing them")
            for context in contexts {
                context.eventLoop.execute { context.value.closeAll() }
            }
            finishDrain()
        }
    }

    private func loopDrained() {
        if loopsDraining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            finishDrain()
        }
    }

    private func finishDrain() {
        let first = phase.withLock { phase -> Bool in
            guard phase == .draining else { return false }
            phase = .stopped
            return true
        }
        if first { drained.signal() }
    }

    /// Stops the watcher and the loops, keeping the final counts. Once.
    private func shutDown() {
        let counts = stats()
        let first = finalStats.withLock { final -> Bool in
            guard final == nil else { return false }
            final = counts
            return true
        }
        guard first else { return }
        watcher.stop()
        acceptor.stop()
        try? group.syncShutdownGracefully()
        options.log(
            "ingress: stopped after \(counts.requests) requests (\(counts.responses) relayed, \(counts.failures) failed, \(counts.retries) retried)")
    }
}

/// Why the ingress could not start: what to fix.
public struct IngressError: Error, CustomStringConvertible, Sendable {
    /// What was wrong.
    public var description: String

    init(_ description: String) {
        self.description = description
    }
}
