#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes

/// Admits to a Unix socket's routes only peers of this process's uid, or root: the
/// socket's mode (0600, in a 0700 run/) is the first guard; the peer's credentials,
/// read from the kernel as the connection opens, are the second, for a socket whose
/// mode or directory was loosened after it was made. A refused peer gets one 403
/// that says who may connect, and nothing it sends reaches a route.
final class PeerCredentialsHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    /// `struct ucred` of `SO_PEERCRED`: three 32-bit fields, laid out the same.
    private struct Credentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    private enum State {
        case checking([HTTPRequestPart])
        case allowed
        case refused
    }

    private let socketName: String
    private let logger: Logger?
    private var state = State.checking([])

    /// `socketName` names the socket in the refusal (`the admin socket`).
    init(socketName: String, logger: Logger? = nil) {
        self.socketName = socketName
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { check(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        check(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .checking(var held):
            held.append(part)
            state = .checking(held)
        case .allowed:
            context.fireChannelRead(data)
        case .refused:
            // Read to the end of the request before answering, so that closing after
            // the refusal is not a reset that destroys it.
            if case .end = part { refuse(context: context) }
        }
    }

    private func check(context: ChannelHandlerContext) {
        guard case .checking = state else { return }
        guard let provider = context.channel as? any SocketOptionProvider else {
            decide(allowed: false, uid: nil, context: context)
            return
        }
        // On the channel's own event loop: reads that come before the answer are held.
        let credentials: EventLoopFuture<Credentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        credentials.assumeIsolated().whenComplete { [self] result in
            let uid = try? result.get().uid
            decide(allowed: uid.map { $0 == getuid() || $0 == 0 } ?? false, uid: uid, context: context)
        }
    }

    private func decide(allowed: Bool, uid: UInt32?, context: ChannelHandlerContext) {
        guard case .checking(let held) = state else { return }
        if allowed {
            state = .allowed
            for part in held { context.fireChannelRead(wrapInboundOut(part)) }
            return
        }
        state = .refused
        logger?.warning("\(socketName): refused a client of another user", metadata: ["uid": "\(uid.map(String.init) ?? "unknown")"])
        if held.contains(where: { if case .end = $0 { true } else { false } }) { refuse(context: context) }
    }

    private func refuse(context: ChannelHandlerContext) {
        let body = jsonEncoder.encodeToBuffer(ErrorBody(
            error: ControlError.Kind.forbidden.rawValue,
            message: "\(socketName) answers only uid \(getuid()) (the supervisor's user) and root"))
        var head = HTTPResponse(status: .forbidden)
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.contentLength] = String(body.readableBytes)
        head.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension PeerCredentialsHandler: Sendable {}

extension JSONEncoder {
    /// `value` as JSON in a buffer (`{}` if it cannot be encoded).
    func encodeToBuffer<Value: Encodable>(_ value: Value) -> ByteBuffer {
        let data = (try? encode(value)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }
}
