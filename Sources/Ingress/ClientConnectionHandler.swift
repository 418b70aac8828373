import BulkheadCore
import HTTPWire
import NIOCore

/// One client connection of the ingress: parses each request in place with
/// `HTTPRequestParser`, finds the customer's pool in the routing table, and relays
/// the request over a keep-alive upstream connection and the response back as it
/// arrives. One request is in flight at a time; pipelined ones wait their turn.
///
/// What a client makes it hold is bounded. A request body is held to the limit of the
/// customer's pool, checked as soon as the head is in (a Content-Length over it gets
/// 413 before any body byte is read; a chunked body is counted as it arrives). While a
/// request is in flight, at most `maxWaitingInbound` bytes of the next ones are read.
/// Answers the client does not read stay in the channel only up to its write-buffer
/// high watermark: past it, no further request is taken and nothing more is read from
/// the client (nor, for a response being relayed, from its pool) until it reads.
///
/// No HTTP codec sits in the pipeline (profiled with one, a third of the time went to
/// retain/release and per-request pipeline work), and the upstream
/// connection lives on this connection's event loop: no thread hop per request.
final class ClientConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The request being relayed.
    private struct Exchange {
        var pool: UpstreamPool
        var poolName: String
        /// The client may keep the connection after the response.
        var keepAlive: Bool
        var http10: Bool
        var isHead: Bool
        var upstream: UpstreamConnection?
        /// The request was sent again on a fresh connection once already.
        var retried = false
        /// The response head went to the client: from here a failure can only
        /// close the connection.
        var headSent = false
        /// The response says `connection: close`: close once it is relayed.
        var closeAfter = false
    }

    /// What the upstream connection does with a response head it received.
    enum HeadRelay {
        /// Wait for more bytes.
        case incomplete
        /// Not a response the ingress relays: answer 502.
        case invalid(String)
        /// A 1xx response of this many bytes, not relayed: skip it.
        case informational(length: Int)
        /// The head (this many bytes) went to the client; the body is framed so.
        case head(length: Int, body: BodyLength, upstreamCloses: Bool)
    }

    /// How long a response body is.
    enum BodyLength: Equatable {
        /// This many bytes (0: none).
        case length(Int)
        /// Until the pool closes the connection.
        case untilClose
    }

    /// What became of the bytes at the start of `inbound`.
    private enum Step {
        /// Not a whole request yet (answer `100 Continue` when asked, once).
        case incomplete(sendContinue: Bool)
        /// Answered by the ingress itself; close afterwards when asked.
        case answered(consumed: Int, close: Bool)
        /// A request for a pool, ready in `forward`.
        case forward(consumed: Int, Exchange)
        /// Malformed, or a body over the limit: answered, and the connection closes
        /// in order (the rest of the request is never read).
        case close
    }

    /// Bodies up to this size are copied into the output buffer with the head (one
    /// write); larger ones go out as the slices they arrived in.
    private static let copyLimit = 16 * 1024
    /// A forwarding buffer grown past this by a large body is not kept between requests.
    private static let retainedForwardCapacity = 64 * 1024
    /// While a request is in flight, past this many bytes of the next ones the
    /// connection stops reading: they are served one at a time anyway.
    private static let maxWaitingInbound = 64 * 1024
    /// Answers the ingress writes itself are handed to the channel once this many
    /// are pending, so the channel's watermark counts them.
    private static let outputHandOffBytes = 16 * 1024

    private let loop: LoopContext
    private var context: ChannelHandlerContext?
    private var parser: HTTPRequestParser
    /// Unparsed bytes: an incomplete request, or pipelined ones waiting their turn.
    private var inbound: ByteBuffer?
    /// Bytes for the client, flushed once per read.
    private var output: ByteBuffer
    /// `output` was handed to the channel; clear it before reuse (by then the
    /// write is done, and clearing does not copy).
    private var outputHandedOff = false
    /// Something was written to the channel and not flushed.
    private var unflushed = false
    /// The request as the pool gets it; kept until the response starts, for a retry.
    private var forward: ByteBuffer
    private var forwardedFor: [UInt8] = []
    private var exchange: Exchange?
    private var closing = false
    private var driving = false
    private var sentContinue = false
    private var readingPaused = false
    /// The client left more answers unread than the channel's high watermark: no
    /// request is taken from `inbound`, and reading is paused, until it reads.
    private var waitingForClient = false
    /// The head of the request being received was routed and its body limit set.
    private var bodyLimitChecked = false
    /// The pool whose limit holds the body of the request being received (nil: the
    /// request goes to no pool, and the largest pool's limit holds).
    private var bodyLimitPool: (name: String, limit: Int)?
    /// The connection is closing in order: its sending side is shut, and what the
    /// client still sends is dropped until it closes or `lingerTimeout` passes.
    private var lingering = false
    private var lingerTimer: Scheduled<Void>?
    /// The client shut its side down (half-close): what it sent is still answered,
    /// then the connection closes.
    private var inputClosed = false
    private var arrivalTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()

    init(loop: LoopContext, allocator: ByteBufferAllocator) {
        self.loop = loop
        self.parser = HTTPRequestParser(limits: loop.options.parserLimits)
        // Each body is held to its pool's limit, known once the head is parsed.
        parser.stopsAfterHead = true
        self.output = allocator.buffer(capacity: 4096)
        self.forward = allocator.buffer(capacity: 4096)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        loop.clientOpened(self)
        forwardedFor = RequestForwarding.forwardedForLine(context.channel.remoteAddress)
        if loop.draining {
            closeNow()
            return
        }
        armIdleTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        arrivalTimer?.cancel()
        idleTimer?.cancel()
        lingerTimer?.cancel()
        if let upstream = exchange?.upstream {
            upstream.abandon()
        }
        exchange = nil
        inbound = nil
        loop.clientClosed(self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        if var buffered = inbound {
            // Let go of the stored copy first, so appending does not copy the buffer.
            inbound = nil
            buffered.writeBuffer(&incoming)
            inbound = buffered
        } else {
            inbound = incoming
        }
        if exchange != nil || waitingForClient {
            // Pipelined while a request is in flight, or while the client has not
            // read its answers: it waits, within bounds.
            if let waiting = inbound?.readableBytes, waiting > Self.maxWaitingInbound {
                pauseReading()
            }
            return
        }
        drive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput()
    }

    /// A client that half-closes after its requests (`shutdown(SHUT_WR)`, what
    /// `nc -N` does) still gets every answer: the requests already received are
    /// served, and the connection closes after the last one.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .some(ChannelEvent.inputClosed) = event as? ChannelEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if lingering {
            // Everything the client sent after the refusal has been dropped.
            context.close(promise: nil)
            return
        }
        inputClosed = true
        if exchange == nil && !waitingForClient { drive() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            exchange?.upstream?.resumeReading()
            if waitingForClient {
                // The client read its answers down to the low watermark: go on.
                waitingForClient = false
                lastActivity = .now()
                if exchange == nil {
                    drive()
                    flushOutput()
                }
                resumeReadingIfRoom()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Requests

    /// Serves what `inbound` holds until a request goes upstream, more bytes are
    /// needed, or the connection closes. Re-entrant calls (a response that completes
    /// while a request is being sent) return at once: the outer call goes on.
    private func drive() {
        guard !driving else { return }
        driving = true
        defer { driving = false }
        var refused = false
        while !closing && exchange == nil, var buffer = inbound, buffer.readableBytes > 0 {
            // The flush in `clientIsBehind` may find the connection closed.
            if clientIsBehind() || closing { break }
            inbound = nil
            prepareOutput()
            let step = buffer.withUnsafeReadableBytes { parseOne($0) }
            switch step {
            case .incomplete(let sendContinue):
                if sendContinue && !sentContinue {
                    sentContinue = true
                    output.writeStaticString("HTTP/1.1 100 Continue\r\n\r\n")
                }
                if inputClosed {
                    // The rest of this request can never arrive.
                    closing = true
                    break
                }
                if arrivalTimer == nil { armArrivalTimer() }
                inbound = buffer
                return
            case .answered(let consumed, let close):
                buffer.moveReaderIndex(forwardBy: consumed)
                requestArrived()
                if close {
                    closing = true
                } else if buffer.readableBytes > 0 {
                    inbound = buffer
                }
            case .forward(let consumed, let exchange):
                buffer.moveReaderIndex(forwardBy: consumed)
                requestArrived()
                if buffer.readableBytes > 0 { inbound = buffer }
                self.exchange = exchange
                exchange.pool.acquire(for: self, fresh: false)
            case .close:
                closing = true
                refused = true
            }
        }
        if !closing && exchange == nil && inputClosed && !waitingForClient {
            // Everything the client sent is answered.
            closing = true
        }
        if refused {
            closeInOrder()
        } else if closing {
            flushAndClose()
        }
    }

    /// Whether the client has left more answers unread than the channel's high
    /// watermark. Then it must read before the next request is taken: the ingress
    /// stops reading from it, and `channelWritabilityChanged` goes on once it has.
    /// Without this a client that pipelines and never reads makes the ingress hold
    /// every answer (3 GB in 8 s with four connections).
    private func clientIsBehind() -> Bool {
        guard let context else { return false }
        if !outputHandedOff && output.readableBytes >= Self.outputHandOffBytes {
            // Answers the ingress wrote itself count against the watermark too.
            writeOutput()
        }
        guard !context.channel.isWritable else { return false }
        // What was written must be on its way for the client to catch up; the flush
        // may also find the socket writable again.
        flushOutput()
        guard !context.channel.isWritable else { return false }
        waitingForClient = true
        pauseReading()
        return true
    }

    private func requestArrived() {
        sentContinue = false
        arrivalTimer?.cancel()
        arrivalTimer = nil
        lastActivity = .now()
    }

    /// Parses the request at the start of `bytes` and either answers it here or
    /// prepares it for its pool.
    private func parseOne(_ bytes: UnsafeRawBufferPointer) -> Step {
        if !parser.hasPartialRequest {
            // A new request: until its pool is known, no pool takes a larger body.
            parser.limits.maxBodyBytes = loop.maxBodyBytes
            bodyLimitChecked = false
            bodyLimitPool = nil
        }
        var result = parser.parse(bytes)
        if case .incomplete(let state) = result, state.headComplete && !bodyLimitChecked {
            // The parser stopped after the head (`stopsAfterHead`): hold the body to
            // its pool's limit, then go on into it.
            if let refusal = limitBodyToPool(bytes) { return refusal }
            result = parser.parse(bytes)
        }
        let head: HTTPRequestHead
        switch result {
        case .incomplete(let state):
            return .incomplete(sendContinue: state.shouldSendContinue)
        case .error(let error):
            loop.stats.requests += 1
            loop.stats.badRequests += 1
            let kind: IngressErrorKind = error.status == 413 ? .tooLarge : .badRequest
            var reason = error.reason
            if error == .bodyTooLarge, let pool = bodyLimitPool {
                reason = "the request body is over \(pool.limit) bytes, the limit of pool '\(pool.name)' (its cohort's max_body_kb)"
            }
            writeError(kind, status: error.status, reason, keepAlive: false, http10: false, omitBody: false)
            return .close
        case .request(let parsed):
            head = parsed
        }
        loop.stats.requests += 1
        let keepAlive = head.keepAlive && !loop.draining
        let http10 = head.version == .http1_0
        let isHead = head.knownMethod == .head
        func answer(_ kind: IngressErrorKind, _ message: String) -> Step {
            writeError(kind, status: kind.status, message, keepAlive: keepAlive, http10: http10, omitBody: isHead)
            return .answered(consumed: head.consumed, close: !keepAlive)
        }
        guard let route = HTTPRoute.resolve(head, in: bytes) else {
            loop.stats.unknownCustomers += 1
            return answer(.noScript, "no script is addressed by this host and path; use SCRIPT.CUSTOMER.localhost or /CUSTOMER/SCRIPT/")
        }
        guard let routes = loop.routes else {
            loop.stats.badGateways += 1
            return answer(.badGateway, "the ingress has no routing table yet (\(loop.options.routesFile) is missing or unreadable)")
        }
        switch routes.destination(of: route.customer) {
        case .unknownCustomer:
            loop.stats.unknownCustomers += 1
            return answer(.noScript, "customer '\(route.customer)' is not known to the ingress")
        case .poolWithoutPort(let name):
            loop.stats.badGateways += 1
            return answer(.badGateway, "customer '\(route.customer)' is assigned to pool '\(name)', which has no port in the routing table")
        case .pool(let name, let port, _) where port == loop.ownPort:
            loop.stats.badGateways += 1
            return answer(.badGateway, "the routing table sends pool '\(name)' to port \(port), the ingress's own; refusing to loop")
        case .pool(let name, let port, _):
            prepareForward()
            parser.withBody(of: head, in: bytes) { body in
                RequestForwarding.write(
                    head, fields: parser.headerFields, bytes: bytes, body: body,
                    forwardedFor: forwardedFor, into: &forward)
            }
            let exchange = Exchange(
                pool: loop.pool(port: port), poolName: name, keepAlive: keepAlive, http10: http10, isHead: isHead)
            return .forward(consumed: head.consumed, exchange)
        }
    }

    /// Once the head of a request with a body is in, before the parser has looked at
    /// any of the body: holds the body to the limit of the customer's pool. A
    /// Content-Length over it is refused now; a chunked body is counted as it arrives
    /// (the parser checks every chunk size against the lowered limit). Returns the
    /// refusal, or nil to go on receiving.
    private func limitBodyToPool(_ bytes: UnsafeRawBufferPointer) -> Step? {
        bodyLimitChecked = true
        guard let head = parser.headInProgress, let route = HTTPRoute.resolve(head, in: bytes),
              case .pool(let name, _, let limit?) = loop.routes?.destination(of: route.customer) else {
            // No pool (yet): the request is answered by the ingress once it is in,
            // its body held to the largest pool's limit meanwhile.
            return nil
        }
        bodyLimitPool = (name, limit)
        parser.limits.maxBodyBytes = limit
        guard head.bodyLength > limit else { return nil }
        loop.stats.requests += 1
        return refuseBody(head.bodyLength, pool: name, limit: limit, http10: head.version == .http1_0,
                          isHead: head.knownMethod == .head)
    }

    /// Answers 413 for a body over its pool's limit. The rest of the request is never
    /// read, so the connection closes (in order: `closeInOrder`).
    private func refuseBody(_ length: Int, pool: String, limit: Int, http10: Bool, isHead: Bool) -> Step {
        loop.stats.badRequests += 1
        writeError(.tooLarge, status: 413,
                   "the request body is \(length) bytes; pool '\(pool)' takes at most \(limit) (its cohort's max_body_kb)",
                   keepAlive: false, http10: http10, omitBody: isHead)
        return .close
    }

    private func prepareForward() {
        if forward.capacity > Self.retainedForwardCapacity {
            forward = context?.channel.allocator.buffer(capacity: 4096) ?? ByteBuffer()
        } else {
            forward.clear()
        }
    }

    // MARK: - What the upstream connection calls

    /// The forwarded request, for the upstream connection to send.
    var forwardedRequest: ByteBuffer {
        forward
    }

    /// Whether a request still waits for a connection (it may have been answered, or
    /// the client may have left, while one was connecting).
    var isWaitingForUpstream: Bool {
        !closing && exchange != nil && exchange?.upstream == nil
    }

    /// `upstream` carries the request in flight.
    func attach(_ upstream: UpstreamConnection) {
        exchange?.upstream = upstream
    }

    /// Parses a response head at the start of `bytes` and, when it is whole and
    /// relayable, writes the client's copy with this connection's own `Connection`.
    func relayResponseHead(_ bytes: UnsafeRawBufferPointer) -> HeadRelay {
        guard let exchange else { return .invalid("no request in flight") }
        prepareOutput()
        let mark = output.writerIndex
        switch ResponseHeadRewriter.rewrite(bytes, maxHeadBytes: loop.options.maxResponseHeadBytes, into: &output) {
        case .incomplete:
            return .incomplete
        case .invalid(let reason):
            return .invalid("pool '\(exchange.poolName)' sent an invalid response: \(reason)")
        case .head(let head):
            if (100...199).contains(head.status) {
                // Not forwarded: a worker sends a 1xx only to answer an Expect, which
                // the ingress answers itself and never forwards, so no client waits
                // for one. Its framing was checked: one announcing a body was refused.
                output.moveWriterIndex(to: mark)
                // 101 would switch protocols, but Upgrade is never forwarded.
                return head.status == 101
                    ? .invalid("pool '\(exchange.poolName)' switched protocols unasked")
                    : .informational(length: head.length)
            }
            if head.transferEncoding {
                output.moveWriterIndex(to: mark)
                return .invalid("pool '\(exchange.poolName)' sent a Transfer-Encoding; pools answer with Content-Length")
            }
            let hasBody = head.hasBody(requestWasHead: exchange.isHead)
            let untilClose = hasBody && head.contentLength == nil
            // The connection ends with this response if the client asked, the
            // ingress is draining, or only the close can tell the body's end.
            let closeAfter = !exchange.keepAlive || loop.draining || untilClose
            if closeAfter {
                output.writeStaticString("connection: close\r\n")
            } else if exchange.http10 {
                output.writeStaticString("connection: keep-alive\r\n")
            }
            output.writeStaticString("\r\n")
            self.exchange?.headSent = true
            self.exchange?.closeAfter = closeAfter
            let body: BodyLength = !hasBody ? .length(0) : head.contentLength.map { .length($0) } ?? .untilClose
            return .head(length: head.length, body: body, upstreamCloses: head.upstreamCloses)
        }
    }

    /// Body bytes, relayed as they arrive.
    func relayResponseBody(_ slice: ByteBuffer) {
        guard let context else { return }
        if slice.readableBytes <= Self.copyLimit {
            prepareOutput()
            output.writeImmutableBuffer(slice)
        } else {
            writeOutput()
            context.write(wrapOutboundOut(slice), promise: nil)
            unflushed = true
        }
        if !context.channel.isWritable {
            // Wait for the client before reading more from the pool.
            writeOutput()
            context.flush()
            unflushed = false
            if !context.channel.isWritable { exchange?.upstream?.pauseReading() }
        }
    }

    /// The response was relayed whole: go on with the next request, or close.
    func responseComplete() {
        guard let exchange else { return }
        self.exchange = nil
        loop.stats.responses += 1
        lastActivity = .now()
        if exchange.closeAfter || loop.draining {
            closing = true
            flushAndClose()
            return
        }
        drive()
        resumeReadingIfRoom()
    }

    /// The upstream connection closed without a whole response.
    func upstreamLost(received: Bool, reused: Bool, sentAt: NIODeadline) {
        guard var exchange else { return }
        exchange.upstream = nil
        if exchange.headSent {
            // Part of the response went out: the client can only learn of the break
            // the way the ingress did, by the connection closing.
            loop.stats.brokenResponses += 1
            self.exchange = nil
            closing = true
            flushAndClose()
            return
        }
        if !received && reused && !exchange.retried && NIODeadline.now() - sentAt <= loop.options.retryWindow {
            // The worker closed the idle connection as the request went out (it was
            // draining, or its idle timer fired): nothing was read or answered.
            loop.stats.retries += 1
            exchange.retried = true
            self.exchange = exchange
            exchange.pool.acquire(for: self, fresh: true)
            return
        }
        self.exchange = exchange
        let what = received ? "closed the connection in the middle of its response head" : "closed the connection without answering"
        fail(.badGateway, "pool '\(exchange.poolName)' (127.0.0.1:\(exchange.pool.port)) \(what)")
    }

    /// No connection to the pool could be made.
    func upstreamConnectFailed(port: Int, reason: String) {
        guard let exchange, exchange.upstream == nil, !closing else { return }
        fail(.badGateway, "cannot connect to pool '\(exchange.poolName)' at 127.0.0.1:\(port): \(reason)")
    }

    /// The pool sent something the ingress does not relay.
    func upstreamFailed(reason: String) {
        guard exchange != nil else { return }
        fail(.badGateway, reason)
    }

    /// The pool was silent past the response timeout.
    func upstreamTimedOut() {
        guard let exchange else { return }
        if exchange.headSent {
            loop.stats.brokenResponses += 1
            self.exchange = nil
            closing = true
            flushAndClose()
            return
        }
        let seconds = loop.options.upstreamResponseTimeout.nanoseconds / 1_000_000_000
        fail(.gatewayTimeout, "pool '\(exchange.poolName)' did not answer within \(seconds) s")
    }

    /// Answers the request in flight with an error of the ingress's own, then goes on.
    private func fail(_ kind: IngressErrorKind, _ message: String) {
        guard let exchange else { return }
        self.exchange = nil
        switch kind {
        case .gatewayTimeout: loop.stats.gatewayTimeouts += 1
        default: loop.stats.badGateways += 1
        }
        let keepAlive = exchange.keepAlive && !loop.draining
        prepareOutput()
        writeError(kind, status: kind.status, message, keepAlive: keepAlive, http10: exchange.http10, omitBody: exchange.isHead)
        lastActivity = .now()
        if !keepAlive {
            closing = true
            flushAndClose()
            return
        }
        drive()
        flushOutput()
        resumeReadingIfRoom()
    }

    // MARK: - Draining

    /// Closes the connection if no request is in flight or partly received.
    func closeIfIdle() {
        guard !closing, exchange == nil, inbound == nil else { return }
        closing = true
        flushAndClose()
    }

    /// Closes the connection now, whatever it is doing.
    func closeNow() {
        closing = true
        context?.close(promise: nil)
    }

    // MARK: - Errors

    private func writeError(
        _ kind: IngressErrorKind, status: Int, _ message: String, keepAlive: Bool, http10: Bool, omitBody: Bool
    ) {
        let id = loop.requestID()
        var body = "{\"error\":\"\(kind.name)\",\"message\":"
        JSONText.appendQuoted(message, to: &body)
        body += ",\"request_id\":\"\(id)\"}\n"
        loop.statusLines.write(status, into: &output)
        output.writeStaticString("content-type: application/json\r\nx-bulkhead-error: ")
        output.writeString(kind.name)
        output.writeStaticString("\r\nx-request-id: ")
        output.writeString(id)
        output.writeStaticString("\r\n")
        output.writeBytes(loop.identityHeaders)
        output.writeStaticString("content-length: ")
        output.writeString(String(body.utf8.count))
        if !keepAlive {
            output.writeStaticString("\r\nconnection: close")
        } else if http10 {
            output.writeStaticString("\r\nconnection: keep-alive")
        }
        output.writeStaticString("\r\n\r\n")
        if !omitBody { output.writeString(body) }
    }

    // MARK: - Output

    private func prepareOutput() {
        if outputHandedOff {
            output.clear()
            outputHandedOff = false
        }
    }

    /// Hands what `output` holds to the channel, unflushed.
    private func writeOutput() {
        guard !outputHandedOff, output.readableBytes > 0, let context else { return }
        context.write(wrapOutboundOut(output), promise: nil)
        outputHandedOff = true
        unflushed = true
    }

    /// Writes and flushes what is pending.
    func flushOutput() {
        writeOutput()
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    /// Writes what is pending, shuts the sending side, and drops what the client still
    /// sends until it closes its side or `lingerTimeout` passes, then closes. For a
    /// refusal whose request was not read whole: closing with unread bytes would send a
    /// reset, which can destroy the answer before the client reads it.
    private func closeInOrder() {
        closing = true
        lingering = true
        inbound = nil
        arrivalTimer?.cancel()
        idleTimer?.cancel()
        guard let context else { return }
        writeOutput()
        unflushed = false
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: written)
        let timeout = loop.options.lingerTimeout
        written.futureResult.assumeIsolated().whenComplete { [self] result in
            guard case .success = result, !inputClosed else {
                // Nothing more can come (or nothing could be written): close now.
                context.close(promise: nil)
                return
            }
            let shut = context.eventLoop.makePromise(of: Void.self)
            context.close(mode: .output, promise: shut)
            shut.futureResult.assumeIsolated().whenFailure { _ in context.close(promise: nil) }
            lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                context.close(promise: nil)
            }
        }
        // Dropping needs reading: whatever paused it no longer matters.
        waitingForClient = false
        resumeReading()
    }

    private func flushAndClose() {
        arrivalTimer?.cancel()
        idleTimer?.cancel()
        guard let context else { return }
        writeOutput()
        let promise = context.eventLoop.makePromise(of: Void.self)
        if unflushed {
            unflushed = false
            context.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: promise)
        } else {
            promise.succeed(())
        }
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func pauseReading() {
        guard !readingPaused, let context else { return }
        readingPaused = true
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
    }

    private func resumeReading() {
        guard readingPaused, let context else { return }
        readingPaused = false
        try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        context.read()
    }

    /// Reads again unless the client must wait: its answers are unread, or a request
    /// is in flight and `maxWaitingInbound` bytes of the next ones are already held.
    private func resumeReadingIfRoom() {
        guard readingPaused, !waitingForClient, !closing else { return }
        if exchange != nil, let waiting = inbound?.readableBytes, waiting > Self.maxWaitingInbound { return }
        resumeReading()
    }

    // MARK: - Timers

    private func armArrivalTimer() {
        arrivalTimer = loop.eventLoop.assumeIsolated().scheduleTask(in: loop.options.requestArrivalTimeout) { [self] in
            guard !closing, exchange == nil, inbound != nil else { return }
            inbound = nil
            prepareOutput()
            loop.stats.requests += 1
            loop.stats.badRequests += 1
            let seconds = loop.options.requestArrivalTimeout.nanoseconds / 1_000_000_000
            writeError(.badRequest, status: 408, "the request did not arrive within \(seconds) s",
                       keepAlive: false, http10: false, omitBody: false)
            closing = true
            flushAndClose()
        }
    }

    /// Closes the connection once it has been idle for `clientIdleTimeout`. One timer
    /// per connection, re-armed only when it fires: re-arming on every request would
    /// cost an allocation per request.
    private func armIdleTimer() {
        let timeout = loop.options.clientIdleTimeout
        // Busy past the timeout (a long request): look again a tenth of it later.
        let deadline = max(lastActivity + timeout, .now() + .nanoseconds(max(timeout.nanoseconds / 10, 1_000_000)))
        idleTimer = loop.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            guard !closing else { return }
            let idle = NIODeadline.now() - lastActivity >= timeout
            if idle && exchange == nil && (inbound == nil || waitingForClient) {
                // Idle, or its answers unread for the whole timeout: what it holds goes.
                closing = true
                context?.close(promise: nil)
            } else {
                armIdleTimer()
            }
        }
    }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}
