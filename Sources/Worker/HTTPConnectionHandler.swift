import BulkheadCore
import CBulkheadPosix
import Dispatch
import HTTPWire
import LuaSandbox
import NIOCore

/// One client connection of a worker: parses requests in place on the inbound
/// bytes, runs each through its script on this same thread, and appends every
/// response of a read to one output buffer that is flushed once.
///
/// No HTTP codec sits in the pipeline: NOTES.md measured a third of the time going
/// to retain/release and per-request pipeline work with one.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// How long a started request may take to arrive in full (slowloris).
    static let requestArrivalTimeout = TimeAmount.seconds(10)
    /// How long a keep-alive connection may sit idle.
    static let idleTimeout = TimeAmount.seconds(60)

    private let pool: PoolContext
    private var parser: HTTPRequestParser
    /// Bytes of an incomplete request, kept only while one is incomplete.
    private var pending: ByteBuffer?
    private var output: ByteBuffer
    /// The output buffer was handed to the channel; clear it before reuse (by then
    /// the write is done and clearing does not copy).
    private var outputHandedOff = false
    private var closing = false
    private var sentContinue = false
    private var inFlight = false
    private var arrivalTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()
    /// Scratch space for the request's headers as the sandbox takes them.
    private let headerScratch: UnsafeMutableBufferPointer<LuaHeader>

    init(pool: PoolContext, allocator: ByteBufferAllocator) {
        self.pool = pool
        self.parser = HTTPRequestParser(limits: pool.parserLimits)
        self.output = allocator.buffer(capacity: 4096)
        self.headerScratch = .allocate(capacity: max(1, pool.parserLimits.maxHeaderCount))
    }

    deinit {
        headerScratch.deallocate()
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        pool.openConnections += 1
        let closer = NIOLoopBound(context, eventLoop: context.eventLoop)
        let key = ObjectIdentifier(self)
        pool.idleClosers[key] = { [weak self] in
            guard let self, !self.inFlight, self.pending == nil else { return }
            self.closing = true
            closer.value.close(promise: nil)
        }
        armIdleTimer(context: context)
        if pool.draining { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool.openConnections -= 1
        pool.idleClosers[ObjectIdentifier(self)] = nil
        arrivalTimer?.cancel()
        idleTimer?.cancel()
        pool.connectionClosed()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        if var buffered = pending {
            buffered.writeBuffer(&incoming)
            pending = nil
            process(&buffered, context: context)
        } else {
            process(&incoming, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Requests

    private func process(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        if outputHandedOff {
            output.clear()
            outputHandedOff = false
        }
        parser.limits.maxBodyBytes = pool.parserLimits.maxBodyBytes
        while buffer.readableBytes > 0 && !closing {
            let step = buffer.withUnsafeReadableBytes { bytes -> Step in
                switch parser.parse(bytes) {
                case .incomplete(let state):
                    return .incomplete(sendContinue: state.shouldSendContinue)
                case .error(let error):
                    writeParseError(error)
                    return .close
                case .request(let head):
                    inFlight = true
                    defer { inFlight = false }
                    serve(head, bytes: bytes)
                    return head.keepAlive && !pool.draining ? .consumed(head.consumed) : .consumedThenClose(head.consumed)
                }
            }
            switch step {
            case .incomplete(let sendContinue):
                if sendContinue && !sentContinue {
                    sentContinue = true
                    output.writeStaticString("HTTP/1.1 100 Continue\r\n\r\n")
                }
                if arrivalTimer == nil { armArrivalTimer(context: context) }
                pending = buffer
                return
            case .consumed(let count):
                buffer.moveReaderIndex(forwardBy: count)
                sentContinue = false
                arrivalTimer?.cancel()
                arrivalTimer = nil
            case .consumedThenClose(let count):
                buffer.moveReaderIndex(forwardBy: count)
                closing = true
            case .close:
                closing = true
            }
        }
        if closing {
            flushAndClose(context: context)
        } else {
            lastActivity = NIODeadline.now()
        }
    }

    private enum Step {
        case incomplete(sendContinue: Bool)
        case consumed(Int)
        case consumedThenClose(Int)
        case close
    }

    /// Routes one request and runs its script; the response goes into `output`.
    private func serve(_ head: HTTPRequestHead, bytes: UnsafeRawBufferPointer) {
        let startedAt = DispatchTime.now().uptimeNanoseconds
        let connectionHeader: ResponseEncoder.ConnectionHeader =
            !head.keepAlive || pool.draining ? .close : (head.version == .http1_0 ? .keepAlive : .none)
        let omitBody = head.knownMethod == .head
        guard let route = HTTPRoute.resolve(head, in: bytes) else {
            writeError(.noScript, "no script is addressed by this host and path; use SCRIPT.CUSTOMER.localhost or /CUSTOMER/SCRIPT/",
                       connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
            return
        }
        let script: LoadedScript
        switch pool.registry.lookup(customer: route.customer, name: route.script, pool: pool.pool) {
        case .noScript:
            writeError(.noScript, "customer '\(route.customer)' has no script '\(route.script)' here",
                       connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
            return
        case .wrongPool(let other):
            writeError(.wrongPool, "customer '\(route.customer)' is served by the \(other) pool, not \(pool.pool)",
                       connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
            return
        case .script(let found):
            script = found
        }
        if script.quarantined {
            writeError(.quarantined, "script '\(route.script)' is quarantined for killing workers; upload a new version or unquarantine it",
                       connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
            return
        }

        // Headers as the sandbox takes them: views into `bytes`, no copies.
        let fields = parser.headerFields
        let count = min(head.headerCount, headerScratch.count)
        for index in 0..<count {
            let field = fields[index]
            headerScratch[index] = LuaHeader(
                name: UnsafeRawBufferPointer(rebasing: bytes[field.name]),
                value: UnsafeRawBufferPointer(rebasing: bytes[field.value]))
        }
        let result = parser.withBody(of: head, in: bytes) { body -> Result<Int, ScriptError>? in
            let request = LuaRequest(
                method: UnsafeRawBufferPointer(rebasing: bytes[head.method]),
                path: UnsafeRawBufferPointer(rebasing: bytes[route.scriptPath]),
                query: UnsafeRawBufferPointer(rebasing: bytes[head.query]),
                headers: UnsafeBufferPointer(rebasing: headerScratch[0..<count]),
                body: body)
            // The platform first: the runtime with the current rules. It fails open.
            if let platform = pool.platform {
                switch platform.evaluate(request) {
                case .pass:
                    break
                case .block(let status, let blockBody):
                    writeBlocked(status: status, body: blockBody, connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
                    return nil
                case .failed(let error):
                    pool.platformFailed(error)
                }
            }
            // A crash from here to the clear leaves a note naming the script.
            bh_crash_note_set(script.crashNote.baseAddress, script.crashNote.count)
            defer { bh_crash_note_clear() }
            return script.state.handle(request) { response -> Int in
                pool.encoder.writeStatus(response.status, into: &output)
                for index in 0..<response.headerCount {
                    let header = response.header(at: index)
                    if ResponseEncoder.isReserved(header.name) { continue }
                    pool.encoder.writeHeader(name: header.name, value: header.value, into: &output)
                }
                pool.encoder.writeTail(body: response.body, omitBody: omitBody, connection: connectionHeader, into: &output)
                return response.status
            }
        }
        guard let result else { return }
        script.requests += 1
        switch result {
        case .success(let status):
            pool.record(status: status, startedAt: startedAt)
        case .failure(let error):
            let kind = Self.requestErrorKind(error.kind)
            script.errors[kind.rawValue, default: 0] += 1
            pool.scriptFailed(script, error: error)
            writeError(kind, error.message, connection: connectionHeader, omitBody: omitBody, startedAt: startedAt,
                       signature: ErrorSignature.normalize(error.message))
        }
    }

    static func requestErrorKind(_ kind: ScriptErrorKind) -> RequestErrorKind {
        switch kind {
        case .limitCPU: .limitCPU
        case .limitMemory: .limitMemory
        case .limitWall: .limitWall
        case .scriptError, .syntax: .scriptError
        }
    }

    // MARK: Errors

    private func writeError(
        _ kind: RequestErrorKind, _ message: String, connection: ResponseEncoder.ConnectionHeader, omitBody: Bool,
        startedAt: UInt64, signature: String? = nil
    ) {
        let id = "\(pool.pool)-\(pool.pid)-\(pool.nextRequestID())"
        var body = "{\"error\":\"\(kind.rawValue)\",\"message\":"
        JSONText.appendQuoted(message, to: &body)
        body += ",\"request_id\":\"\(id)\"}\n"
        pool.encoder.writeStatus(kind.status, into: &output)
        output.writeStaticString("content-type: application/json\r\nx-bulkhead-error: ")
        output.writeString(kind.rawValue)
        output.writeStaticString("\r\nx-request-id: ")
        output.writeString(id)
        output.writeStaticString("\r\n")
        body.withUTF8 { bytes in
            pool.encoder.writeTail(body: UnsafeRawBufferPointer(bytes), omitBody: omitBody, connection: connection, into: &output)
        }
        pool.recordError(kind, signature: signature)
        pool.record(status: kind.status, startedAt: startedAt)
    }

    /// A rule blocked the request: the runtime's status and body, marked `blocked`.
    private func writeBlocked(status: Int, body: [UInt8], connection: ResponseEncoder.ConnectionHeader, omitBody: Bool, startedAt: UInt64) {
        pool.encoder.writeStatus(status, into: &output)
        output.writeStaticString("content-type: text/plain\r\nx-bulkhead-error: blocked\r\n")
        body.withUnsafeBytes { bytes in
            pool.encoder.writeTail(body: bytes, omitBody: omitBody, connection: connection, into: &output)
        }
        pool.recordError(.blocked, signature: nil)
        pool.record(status: status, startedAt: startedAt)
    }

    private func writeParseError(_ error: HTTPParseError) {
        let kind: RequestErrorKind = error.status == 413 ? .tooLarge : .badRequest
        let id = "\(pool.pool)-\(pool.pid)-\(pool.nextRequestID())"
        var body = "{\"error\":\"\(kind.rawValue)\",\"message\":"
        JSONText.appendQuoted(error.reason, to: &body)
        body += ",\"request_id\":\"\(id)\"}\n"
        pool.encoder.writeStatus(error.status, into: &output)
        output.writeStaticString("content-type: application/json\r\nx-bulkhead-error: ")
        output.writeString(kind.rawValue)
        output.writeStaticString("\r\n")
        body.withUTF8 { bytes in
            pool.encoder.writeTail(body: UnsafeRawBufferPointer(bytes), omitBody: false, connection: .close, into: &output)
        }
        pool.recordError(kind, signature: nil)
        pool.record(status: error.status, startedAt: DispatchTime.now().uptimeNanoseconds)
    }

    /// 408: a request started but did not arrive in time.
    private func writeTimeout() {
        if outputHandedOff {
            output.clear()
            outputHandedOff = false
        }
        let body = "{\"error\":\"bad-request\",\"message\":\"the request did not arrive within \(Self.requestArrivalTimeout.nanoseconds / 1_000_000_000) s\"}\n"
        pool.encoder.writeStatus(408, into: &output)
        output.writeStaticString("content-type: application/json\r\nx-bulkhead-error: bad-request\r\n")
        var text = body
        text.withUTF8 { bytes in
            pool.encoder.writeTail(body: UnsafeRawBufferPointer(bytes), omitBody: false, connection: .close, into: &output)
        }
        pool.recordError(.badRequest, signature: nil)
        pool.record(status: 408, startedAt: DispatchTime.now().uptimeNanoseconds)
    }

    // MARK: Output and timers

    private func flush(context: ChannelHandlerContext) {
        // Handed off already: NIO fires channelReadComplete again, with no read, when
        // the client half-closes (EOF), and the same responses would go out twice.
        guard !outputHandedOff, output.readableBytes > 0 else { return }
        context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        outputHandedOff = true
    }

    private func flushAndClose(context: ChannelHandlerContext) {
        arrivalTimer?.cancel()
        idleTimer?.cancel()
        let promise = context.eventLoop.makePromise(of: Void.self)
        if !outputHandedOff && output.readableBytes > 0 {
            context.writeAndFlush(wrapOutboundOut(output), promise: promise)
            outputHandedOff = true
        } else {
            promise.succeed(())
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
    }

    private func armArrivalTimer(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        arrivalTimer = context.eventLoop.scheduleTask(in: Self.requestArrivalTimeout) {
            let (handler, context) = bound.value
            guard !handler.closing, handler.pending != nil else { return }
            handler.pending = nil
            handler.writeTimeout()
            handler.closing = true
            handler.flushAndClose(context: context)
        }
    }

    /// Closes the connection once it has been idle for `idleTimeout`. One timer per
    /// connection, re-armed only when it fires: re-arming on every read would cost
    /// an allocation per request.
    private func armIdleTimer(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(deadline: lastActivity + Self.idleTimeout) {
            let (handler, context) = bound.value
            guard !handler.closing else { return }
            if NIODeadline.now() - handler.lastActivity >= Self.idleTimeout && !handler.inFlight {
                handler.closing = true
                context.close(promise: nil)
            } else {
                handler.armIdleTimer(context: context)
            }
        }
    }
}

@available(*, unavailable)
extension HTTPConnectionHandler: Sendable {}
