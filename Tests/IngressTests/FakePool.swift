#if canImport(Glibc)
import Glibc
#endif
import HTTPWire
import NIOCore
import NIOPosix
import Synchronization

/// State shared by a fake pool and its connections' handlers.
final class FakePoolShared: Sendable {
    let state = Mutex(FakePool.State())
}

/// A stand-in for a worker pool: an HTTP/1.1 server on 127.0.0.1 (port 0) that
/// answers every request with `x-bulkhead-pool: NAME` and, as its body, the request
/// exactly as it arrived (head and body), so a test sees what the ingress forwarded.
///
/// Paths ending in `/slow-body` get a 200 whose body comes in two parts 1 s apart;
/// paths ending in `/close` get `connection: close`; `/no-length` gets a body ended
/// by closing the connection; `/hang` gets nothing; `/big/N` gets N bytes
/// (`index % 251`).
final class FakePool: Sendable {
    /// How the pool treats requests.
    enum Behaviour: Sendable {
        /// Answer every one, as a worker does.
        case answer
        /// Close a connection that already served a request when the next arrives,
        /// unanswered: what the ingress sees when a worker closed an idle connection
        /// just as a request went out.
        case closeReused
        /// The same, with a reset (SO_LINGER 0) instead of a FIN.
        case resetReused
        /// Close every connection unanswered when a request arrives.
        case closeEvery
    }

    let name: String
    let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let server: any Channel
    private let state: FakePoolShared

    struct State {
        var connectionsAccepted = 0
        var requests = 0
        var behaviour = Behaviour.answer
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    init(name: String) throws {
        self.name = name
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let state = FakePoolShared()
        self.state = state
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ordinal = state.state.withLock { state -> Int in
                        state.connectionsAccepted += 1
                        state.open[ObjectIdentifier(channel)] = channel
                        return state.connectionsAccepted
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        FakePoolHandler(pool: name, connection: ordinal, state: state))
                }
            }
        do {
            server = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        port = server.localAddress?.port ?? 0
    }

    /// Connections open now.
    var openConnections: Int { state.state.withLock { $0.open.count } }
    /// Connections accepted so far.
    var connectionsAccepted: Int { state.state.withLock { $0.connectionsAccepted } }
    /// Requests answered or refused so far.
    var requests: Int { state.state.withLock { $0.requests } }

    /// How requests are treated from now on.
    func setBehaviour(_ behaviour: Behaviour) {
        state.state.withLock { $0.behaviour = behaviour }
    }

    /// Closes every open connection, as a draining worker closes its idle ones.
    func closeConnections() {
        let channels = state.state.withLock { Array($0.open.values) }
        for channel in channels { try? channel.close().wait() }
    }

    /// Stops the server and closes its connections.
    func stop() {
        try? server.close().wait()
        closeConnections()
        try? group.syncShutdownGracefully()
    }
}

private final class FakePoolHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pool: String
    private let connection: Int
    private let state: FakePoolShared
    private var parser = HTTPRequestParser(limits: HTTPParserLimits(maxBodyBytes: 16 * 1024 * 1024))
    private var pending: ByteBuffer?
    private var served = 0

    init(pool: String, connection: Int, state: FakePoolShared) {
        self.pool = pool
        self.connection = connection
        self.state = state
    }

    func channelInactive(context: ChannelHandlerContext) {
        let id = ObjectIdentifier(context.channel)
        state.state.withLock { _ = $0.open.removeValue(forKey: id) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        var buffer: ByteBuffer
        if var held = pending {
            pending = nil
            held.writeBuffer(&incoming)
            buffer = held
        } else {
            buffer = incoming
        }
        let behaviour = state.state.withLock { $0.behaviour }
        if behaviour == .closeEvery || (served > 0 && behaviour != .answer) {
            state.state.withLock { $0.requests += 1 }
            if behaviour == .resetReused, let provider = context.channel as? any SocketOptionProvider {
                // SO_LINGER 0: the close sends a reset instead of a FIN.
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in bound.value.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return
        }
        while buffer.readableBytes > 0 {
            let answer = buffer.withUnsafeReadableBytes { bytes -> (consumed: Int, path: String, raw: [UInt8])? in
                switch parser.parse(bytes) {
                case .request(let head):
                    let path = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[head.path]), as: UTF8.self)
                    return (head.consumed, path, Array(UnsafeRawBufferPointer(rebasing: bytes[0..<head.consumed])))
                case .incomplete:
                    return nil
                case .error:
                    return (-1, "", [])
                }
            }
            guard let answer else {
                pending = buffer
                return
            }
            guard answer.consumed > 0 else {
                context.close(promise: nil)
                return
            }
            buffer.moveReaderIndex(forwardBy: answer.consumed)
            served += 1
            state.state.withLock { $0.requests += 1 }
            respond(context: context, path: answer.path, raw: answer.raw)
        }
    }

    private func respond(context: ChannelHandlerContext, path: String, raw: [UInt8]) {
        var head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-bulkhead-pool: \(pool)\r\n"
        head += "x-bulkhead-worker: 1\r\nx-upstream-connection: \(connection)\r\nx-upstream-path: \(path)\r\n"
        if path.hasSuffix("/hang") {
            return
        }
        if path.hasPrefix("/big/"), let size = Int(path.dropFirst(5)) {
            head += "content-length: \(size)\r\n\r\n"
            var out = context.channel.allocator.buffer(capacity: head.utf8.count + size)
            out.writeString(head)
            let cycle = (0..<251).map { UInt8($0) }
            var left = size
            while left > 0 {
                let count = min(left, cycle.count)
                out.writeBytes(cycle[0..<count])
                left -= count
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            return
        }
        if path.hasSuffix("/slow-body") {
            let first = [UInt8](repeating: 0x61, count: 1000)
            let second = [UInt8](repeating: 0x62, count: 1000)
            head += "content-length: \(first.count + second.count)\r\n\r\n"
            var out = context.channel.allocator.buffer(string: head)
            out.writeBytes(first)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(1000)) {
                let context = bound.value
                context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: second)), promise: nil)
            }
            return
        }
        if path.hasSuffix("/no-length") {
            head += "\r\n"
            var out = context.channel.allocator.buffer(string: head)
            out.writeBytes(raw)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in bound.value.close(promise: nil) }
            return
        }
        let close = path.hasSuffix("/close")
        if close { head += "connection: close\r\n" }
        head += "content-length: \(raw.count)\r\n\r\n"
        var out = context.channel.allocator.buffer(string: head)
        out.writeBytes(raw)
        if close {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in bound.value.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }
}
