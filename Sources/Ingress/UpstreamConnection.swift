import NIOCore

/// One keep-alive connection to a pool. It carries one request at a time for the
/// client connection that holds it: writes the forwarded request, parses the
/// response head in place, and hands the head and then the body bytes to the client
/// as they arrive, without waiting for the whole body.
///
/// It goes back to its `UpstreamPool` when a response ended cleanly and the worker
/// did not ask to close; otherwise it closes.
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// No request: bytes arriving now mean the connection is out of step.
        case idle
        /// The request was sent; the response head is (still) awaited.
        case awaitingHead
        /// This many body bytes are still to come.
        case body(remaining: Int)
        /// The body lasts until the worker closes (a response with no length).
        case untilClose
    }

    private let pool: UpstreamPool
    private var context: ChannelHandlerContext?
    private var client: ClientConnectionHandler?
    private var state = State.idle
    /// The request went out on a connection that had served one before.
    private var reused = false
    /// Some byte of the response has arrived.
    private var received = false
    /// The worker asked to close after this response.
    private var upstreamCloses = false
    /// An incomplete response head, kept until the rest arrives.
    private var partialHead: ByteBuffer?
    private var sentAt = NIODeadline.now()
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var open = false
    private var readingPaused = false
    /// The client this read relayed bytes to, flushed when the read is complete.
    private var flushTarget: ClientConnectionHandler?

    init(pool: UpstreamPool) {
        self.pool = pool
    }

    /// Whether a request can be sent on it now.
    var isUsable: Bool {
        open && client == nil
    }

    // MARK: - Requests

    /// Sends `client`'s forwarded request.
    func begin(_ client: ClientConnectionHandler, reused: Bool) {
        activateIfConnected()
        guard let context, open else {
            // Closed between the pool's check and now: nothing was sent.
            client.upstreamLost(received: false, reused: reused, sentAt: .now())
            return
        }
        self.client = client
        self.reused = reused
        state = .awaitingHead
        received = false
        upstreamCloses = false
        partialHead = nil
        sentAt = .now()
        lastActivity = sentAt
        client.attach(self)
        context.writeAndFlush(wrapOutboundOut(client.forwardedRequest), promise: nil)
    }

    /// The client is gone mid-request: the rest of the response has nowhere to go.
    func abandon() {
        client = nil
        state = .idle
        close()
    }

    /// A connection that connected for a client who left: idle from now on.
    func markIdle() {
        activateIfConnected()
        lastActivity = .now()
    }

    /// A new connection's connect future may complete before channelActive runs.
    private func activateIfConnected() {
        if !open, let context, context.channel.isActive { becomeActive(context: context) }
    }

    func close() {
        guard open, let context else { return }
        open = false
        context.close(promise: nil)
    }

    /// Stops reading while the client cannot take more (its socket buffer is full).
    func pauseReading() {
        guard !readingPaused, let context else { return }
        readingPaused = true
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
    }

    func resumeReading() {
        guard readingPaused, let context else { return }
        readingPaused = false
        try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        context.read()
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { becomeActive(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        becomeActive(context: context)
        context.fireChannelActive()
    }

    private func becomeActive(context: ChannelHandlerContext) {
        guard !open else { return }
        open = true
        lastActivity = .now()
        armTimer()
    }

    func channelInactive(context: ChannelHandlerContext) {
        open = false
        timer?.cancel()
        timer = nil
        pool.forget(self)
        guard let client else { return }
        self.client = nil
        let state = self.state
        self.state = .idle
        if case .untilClose = state {
            // The close is how this response ends.
            client.responseComplete()
        } else {
            client.upstreamLost(received: received, reused: reused, sentAt: sentAt)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or a failed write: the close that follows decides what the client gets.
        close()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let client else {
            // Bytes nobody asked for: the connection is out of step. Never reuse it.
            close()
            return
        }
        received = true
        lastActivity = .now()
        flushTarget = client
        relay(&buffer, to: client)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // One flush per read, not per relayed piece. The client it goes to may have
        // been handed back already (its response ended in this read).
        if let target = flushTarget {
            flushTarget = nil
            target.flushOutput()
        }
    }

    // MARK: - Relaying

    private func relay(_ buffer: inout ByteBuffer, to client: ClientConnectionHandler) {
        while true {
            switch state {
            case .idle:
                if buffer.readableBytes > 0 { close() }
                return
            case .awaitingHead:
                if var held = partialHead {
                    partialHead = nil
                    held.writeBuffer(&buffer)
                    buffer = held
                }
                guard buffer.readableBytes > 0 else { return }
                let relayed = buffer.withUnsafeReadableBytes { client.relayResponseHead($0) }
                switch relayed {
                case .incomplete:
                    partialHead = buffer
                    return
                case .invalid(let reason):
                    fail(client, reason: reason)
                    return
                case .informational(let length):
                    buffer.moveReaderIndex(forwardBy: length)
                case .head(let length, let body, let closes):
                    buffer.moveReaderIndex(forwardBy: length)
                    upstreamCloses = closes
                    switch body {
                    case .length(0):
                        finish(client, leftover: buffer.readableBytes)
                        return
                    case .length(let count):
                        state = .body(remaining: count)
                    case .untilClose:
                        state = .untilClose
                    }
                }
            case .body(let remaining):
                let count = min(remaining, buffer.readableBytes)
                guard count > 0, let slice = buffer.readSlice(length: count) else { return }
                client.relayResponseBody(slice)
                if count == remaining {
                    finish(client, leftover: buffer.readableBytes)
                    return
                }
                state = .body(remaining: remaining - count)
                return
            case .untilClose:
                if buffer.readableBytes > 0 { client.relayResponseBody(buffer) }
                return
            }
        }
    }

    /// The response ended: back to the pool (or closed), then the client goes on.
    private func finish(_ client: ClientConnectionHandler, leftover: Int) {
        self.client = nil
        state = .idle
        lastActivity = .now()
        // The last bytes may have filled the client's buffer: reading was paused for
        // a response that is over now. The next one must be read.
        resumeReading()
        // Bytes past the response were never asked for: out of step, do not reuse.
        if upstreamCloses || leftover > 0 || !open {
            // A closed channel gets no channelReadComplete: flush the client now.
            flushTarget = nil
            close()
            client.responseComplete()
            client.flushOutput()
        } else {
            pool.release(self)
            client.responseComplete()
        }
    }

    /// The response cannot be relayed (not HTTP, or framed in a way the ingress
    /// refuses): the client gets a 502 and the connection closes.
    private func fail(_ client: ClientConnectionHandler, reason: String) {
        self.client = nil
        state = .idle
        close()
        client.upstreamFailed(reason: reason)
    }

    // MARK: - Timer

    /// One timer per connection, re-armed when it fires: it closes an idle
    /// connection after `upstreamIdleTimeout` and ends a request the pool has been
    /// silent on for `upstreamResponseTimeout`. Arming one per request would cost an
    /// allocation per request.
    private func armTimer() {
        let options = pool.context.options
        let period = min(options.upstreamIdleTimeout, options.upstreamResponseTimeout)
        let due = lastActivity + (client == nil ? options.upstreamIdleTimeout : options.upstreamResponseTimeout)
        // Never later than a period from now: the connection may change between idle
        // and busy before then, and the other deadline may be the nearer one.
        let deadline = min(due, NIODeadline.now() + period)
        timer = pool.context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timerFired()
        }
    }

    private func timerFired() {
        guard open else { return }
        let options = pool.context.options
        let silent = NIODeadline.now() - lastActivity
        if let client {
            if silent >= options.upstreamResponseTimeout {
                self.client = nil
                state = .idle
                close()
                client.upstreamTimedOut()
                return
            }
        } else if silent >= options.upstreamIdleTimeout {
            pool.forget(self)
            close()
            return
        }
        armTimer()
    }
}

@available(*, unavailable)
extension UpstreamConnection: Sendable {}
