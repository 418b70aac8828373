#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import CLuaSandbox
import HTTPWire
import LuaSandbox

/// One client connection of a worker: reads into the loop's read buffer, parses
/// requests in place there, runs each through its script on this same thread, and
/// appends every response of a read to the loop's write buffer. The write itself
/// waits for the end of the loop's turn (`PoolContext.flushWrites`).
///
/// Why wait: a write that finds its client asleep wakes it, and on this machine a
/// wake-up across cores cost the writer more than the write (3 µs a request on the
/// heavy handler, `sock_def_readable`). Written back to back at the end of a turn,
/// the responses mostly find the client awake from the first. Redis defers its
/// writes to the end of the turn the same way.
///
/// A connection holds buffers of its own only while it must: the bytes of an
/// incomplete request (or of pipelined requests not served yet), and response bytes
/// the socket did not take. While responses are unsent it is watched for
/// writability alone: a client that does not read its responses gets no more of
/// them computed (backpressure). One read's pipelined requests are served only
/// until their answers reach `maxOutputPerTurn`; the rest wait for those to go.
final class HTTPConnection: LoopHandler {
    /// How long a started request may take to arrive in full (slowloris), in ns.
    static let requestArrivalTimeout: UInt64 = 10_000_000_000
    /// How long a keep-alive connection may sit idle, or a response wait for the
    /// client to read it, in ns.
    static let idleTimeout: UInt64 = 60_000_000_000
    /// The most read at once into the loop's read buffer.
    static let readSize = 64 * 1024
    /// Past this many bytes of answers in one turn, a connection's further
    /// pipelined requests wait for the next turn in which the socket is writable.
    static let maxOutputPerTurn = 1 << 20
    /// How long a connection closing in order reads (and drops) what the client
    /// still sends before it is closed anyway, in ns (checked once a second).
    static let lingerTimeout: UInt64 = 1_000_000_000

    let fd: Int32
    private let pool: PoolContext
    private let loop: WorkerLoop
    private var parser: HTTPRequestParser
    /// The bytes of an incomplete request.
    private var pending: IOBuffer?
    /// Response bytes written but not yet taken by the socket.
    private var unsent: IOBuffer?
    private var closed = false
    /// Close once `unsent` is out (after `Connection: close`, an error, a drain).
    private var closeWhenSent = false
    /// `pending` starts with complete requests left unserved for `maxOutputPerTurn`.
    private var moreToServe = false
    /// What the loop watches the descriptor for.
    private var watching = BH_EVENT_READ
    /// When the connection began closing in order (`closeInOrder`); 0: it has not.
    private var lingeringSince: UInt64 = 0
    private var sentContinue = false
    /// When the incomplete request in `pending` began to arrive (0: none).
    private var arrivalStartedAt: UInt64 = 0
    /// The last read or write progress.
    private var lastActivity: UInt64
    /// When the loop woke for the bytes being processed: each request's start.
    private var readAt: UInt64 = 0
    /// Its responses of this turn wait in the loop's write buffer, at `segment`.
    private(set) var queued = false
    private var segment = 0..<0
    /// The peer's address as text, read once, when a split first needs it.
    private var peerAddress: [UInt8]?

    init(fd: Int32, pool: PoolContext, loop: WorkerLoop) {
        self.fd = fd
        self.pool = pool
        self.loop = loop
        self.parser = HTTPRequestParser(limits: pool.parserLimits)
        self.lastActivity = loop.now
    }

    /// Whether a drain may close it now: no request under way, nothing unsent.
    var isIdle: Bool { pending == nil && unsent == nil && !queued }

    // MARK: Events

    func ready(_ events: UInt32) {
        if lingeringSince != 0 {
            dropInput()
        } else if unsent != nil {
            // Watched for writability only; an error or hang-up fails the write.
            writeUnsent()
        } else if moreToServe {
            serveBuffered()
        } else {
            readAndServe()
        }
    }

    private func watch(_ events: UInt32) {
        guard events != watching, !closed else { return }
        watching = events
        loop.change(fd, events: events)
    }

    private func readAndServe() {
        let buffer = pending ?? pool.input
        let room = buffer.reserve(pending == nil ? Self.readSize : 16 * 1024)
        var count: Int
        // recv and send, not read and write: the socket calls skip the file layer
        // (vfs_read, fdget_pos, rw_verify_area), and send needs no SIGPIPE.
        repeat {
            count = recv(fd, room.baseAddress, room.count, 0)
        } while count < 0 && errno == EINTR
        if count <= 0 {
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            // End of input (or a reset): an incomplete request can never complete,
            // and everything owed went out at the end of the turn that served it.
            close()
            return
        }
        buffer.commit(count)
        // A request's time starts when the loop woke for it: waiting behind the other
        // connections of the turn is part of its latency.
        readAt = loop.now
        lastActivity = loop.now
        let outputStart = pool.output.count
        process(buffer)
        if buffer === pool.input {
            if !buffer.isEmpty && !closeWhenSent {
                let kept = IOBuffer(capacity: max(buffer.count * 2, 4096))
                kept.append(buffer.bytes)
                pending = kept
            }
            buffer.clear()
        } else if buffer.isEmpty || closeWhenSent {
            pending = nil
        }
        queueOutput(from: outputStart)
    }

    /// Serves the requests left in `pending` for `maxOutputPerTurn` (the socket
    /// took the answers before them).
    private func serveBuffered() {
        moreToServe = false
        guard let buffer = pending else {
            watch(BH_EVENT_READ)
            return
        }
        let outputStart = pool.output.count
        process(buffer)
        if buffer.isEmpty || closeWhenSent { pending = nil }
        if !moreToServe { watch(BH_EVENT_READ) }
        queueOutput(from: outputStart)
    }

    /// Serves the complete requests in `buffer` and consumes them, up to
    /// `maxOutputPerTurn` bytes of answers; an incomplete one stays, and so do the
    /// requests past that (`moreToServe`).
    private func process(_ buffer: IOBuffer) {
        parser.limits.maxBodyBytes = pool.parserLimits.maxBodyBytes
        let bytes = buffer.bytes
        let outputStart = pool.output.count
        var offset = 0
        loop: while offset < bytes.count && !closeWhenSent {
            if pool.output.count - outputStart >= Self.maxOutputPerTurn {
                moreToServe = true
                break
            }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch parser.parse(rest) {
            case .incomplete(let state):
                if state.shouldSendContinue && !sentContinue {
                    sentContinue = true
                    pool.output.append("HTTP/1.1 100 Continue\r\n\r\n")
                }
                if arrivalStartedAt == 0 { arrivalStartedAt = loop.now }
                break loop
            case .error(let error):
                writeParseError(error)
                closeWhenSent = true
            case .request(let head):
                serve(head, bytes: rest)
                offset += head.consumed
                sentContinue = false
                arrivalStartedAt = 0
                if !head.keepAlive || pool.draining { closeWhenSent = true }
            }
        }
        buffer.consume(offset)
    }

    /// Routes one request and runs its script; the response goes into `output`.
    private func serve(_ head: HTTPRequestHead, bytes: UnsafeRawBufferPointer) {
        let startedAt = readAt
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

        // Under a gradual deployment, the request's key picks the version.
        var runner = script
        if let split = script.split, takesCandidate(split, head: head, bytes: bytes) {
            runner = split.candidate
        }

        // Headers as the sandbox takes them: views into `bytes`, no copies.
        let fields = parser.headerFields
        let headerScratch = pool.headerScratch
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
            // The clock read that ended its call starts the script's (0: none).
            var clock: UInt64 = 0
            if let platform = pool.platform {
                switch platform.evaluate(request) {
                case .pass:
                    clock = platform.finishedAt
                case .block(let status, let blockBody):
                    writeBlocked(status: status, body: blockBody, connection: connectionHeader, omitBody: omitBody, startedAt: startedAt)
                    return nil
                case .failed(let error):
                    pool.platformFailed(error)
                }
            }
            // A crash from here to the clear leaves a note naming the script.
            bh_crash_note_set(runner.crashNote.baseAddress, runner.crashNote.count)
            defer { bh_crash_note_clear() }
            return runner.state.handle(request, startedAt: clock) { response -> Int in
                pool.encoder.writeStatus(response.status, into: pool.output)
                for index in 0..<response.headerCount {
                    let header = response.header(at: index)
                    if ResponseEncoder.isReserved(header.name) { continue }
                    pool.encoder.writeHeader(name: header.name, value: header.value, into: pool.output)
                }
                pool.encoder.writeTail(status: response.status, body: response.body, omitBody: omitBody,
                                       connection: connectionHeader, requestID: pool.nextRequestID(), into: pool.output)
                return response.status
            }
        }
        guard let result else { return }
        script.requests += 1
        switch result {
        case .success(let status):
            pool.record(status: status, startedAt: startedAt, finishedAt: runner.state.finishedAt)
            if runner.versionCounts != nil {
                runner.versionCounts!.requests += 1
                runner.versionCounts!.latency.record(nanoseconds: runner.state.finishedAt &- startedAt)
            }
        case .failure(let error):
            let kind = Self.requestErrorKind(error.kind)
            script.errors[kind.rawValue, default: 0] += 1
            pool.scriptFailed(runner, error: error)
            let signature = ErrorSignature.normalize(error.message)
            if runner.knownSignatures.count < LoadedScript.maxKnownSignatures { runner.knownSignatures.insert(signature) }
            writeError(kind, error.message, connection: connectionHeader, omitBody: omitBody, startedAt: startedAt,
                       signature: signature)
            if runner.versionCounts != nil {
                runner.versionCounts!.requests += 1
                runner.versionCounts!.scriptErrors += 1
                runner.versionCounts!.countSignature(signature)
                runner.versionCounts!.latency.record(nanoseconds: bh_now_ns() &- startedAt)
            }
        }
    }

    // MARK: Splits

    /// Whether this request goes to the candidate of `split`: by the value of the
    /// key header when the split names one and the request has it, else by the
    /// client's address (the last `x-forwarded-for` the ingress added, else the
    /// connection's peer).
    private func takesCandidate(_ split: LoadedSplit, head: HTTPRequestHead, bytes: UnsafeRawBufferPointer) -> Bool {
        let fields = parser.headerFields
        let count = min(head.headerCount, fields.count)
        if let name = split.keyHeader {
            for index in 0..<count where Self.nameEquals(bytes, fields[index].name, name) {
                return split.config.takesCandidate(UnsafeRawBufferPointer(rebasing: bytes[fields[index].value]), at: readAt)
            }
        }
        var forwarded: Range<Int>?
        for index in 0..<count where Self.nameEquals(bytes, fields[index].name, Self.forwardedFor) {
            forwarded = fields[index].value
        }
        if let forwarded {
            // The last address of the list: the hop nearest to us.
            var start = forwarded.lowerBound
            for position in forwarded where bytes[position] == UInt8(ascii: ",") { start = position + 1 }
            var range = start..<forwarded.upperBound
            while let first = range.first, bytes[first] == UInt8(ascii: " ") { range = range.dropFirst() }
            return split.config.takesCandidate(UnsafeRawBufferPointer(rebasing: bytes[range]), at: readAt)
        }
        if peerAddress == nil { peerAddress = Array(Sockets.peerAddress(of: fd).utf8) }
        return split.config.takesCandidate(peerAddress!, at: readAt)
    }

    private static let forwardedFor = Array("x-forwarded-for".utf8)

    /// Whether the header name at `range` is `lowercased`, ignoring case.
    private static func nameEquals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercased: [UInt8]) -> Bool {
        guard range.count == lowercased.count else { return false }
        var position = range.lowerBound
        for expected in lowercased {
            var byte = bytes[position]
            if byte >= 0x41 && byte <= 0x5a { byte |= 0x20 }
            if byte != expected { return false }
            position += 1
        }
        return true
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
        writeErrorResponse(status: kind.status, kind: kind, message: message, connection: connection, omitBody: omitBody)
        pool.recordError(kind, signature: signature)
        pool.record(status: kind.status, startedAt: startedAt)
    }

    /// A JSON error: `{"error": KIND, "message": ..., "request_id": ...}`, with the
    /// kind in `x-bulkhead-error` and the id in `x-request-id`.
    private func writeErrorResponse(
        status: Int, kind: RequestErrorKind, message: String, connection: ResponseEncoder.ConnectionHeader, omitBody: Bool
    ) {
        let number = pool.nextRequestID()
        var body = "{\"error\":\"\(kind.rawValue)\",\"message\":"
        JSONText.appendQuoted(message, to: &body)
        body += ",\"request_id\":\"\(pool.encoder.requestID(number))\"}\n"
        pool.encoder.writeStatus(status, into: pool.output)
        pool.output.append("content-type: application/json\r\nx-bulkhead-error: ")
        pool.output.append(string: kind.rawValue)
        pool.output.append("\r\n")
        body.withUTF8 { bytes in
            pool.encoder.writeTail(status: status, body: UnsafeRawBufferPointer(bytes), omitBody: omitBody,
                                   connection: connection, requestID: number, into: pool.output)
        }
    }

    /// A rule blocked the request: the runtime's status and body, marked `blocked`.
    private func writeBlocked(status: Int, body: [UInt8], connection: ResponseEncoder.ConnectionHeader, omitBody: Bool, startedAt: UInt64) {
        pool.encoder.writeStatus(status, into: pool.output)
        pool.output.append("content-type: text/plain\r\nx-bulkhead-error: blocked\r\n")
        body.withUnsafeBytes { bytes in
            pool.encoder.writeTail(status: status, body: bytes, omitBody: omitBody, connection: connection,
                                   requestID: pool.nextRequestID(), into: pool.output)
        }
        pool.recordError(.blocked, signature: nil)
        pool.record(status: status, startedAt: startedAt)
    }

    private func writeParseError(_ error: HTTPParseError) {
        let kind: RequestErrorKind = error.status == 413 ? .tooLarge : .badRequest
        writeErrorResponse(status: error.status, kind: kind, message: error.reason, connection: .close, omitBody: false)
        pool.recordError(kind, signature: nil)
        pool.record(status: error.status, startedAt: bh_now_ns())
    }

    /// 408: a request started but did not arrive in time.
    private func writeTimeout() {
        let seconds = Self.requestArrivalTimeout / 1_000_000_000
        writeErrorResponse(status: 408, kind: .badRequest, message: "the request did not arrive within \(seconds) s",
                           connection: .close, omitBody: false)
        pool.recordError(.badRequest, signature: nil)
        pool.record(status: 408, startedAt: bh_now_ns())
    }

    // MARK: Output

    /// Queues what this connection put in the loop's write buffer from `start` on
    /// (and its close, if due) for the end of the turn.
    private func queueOutput(from start: Int) {
        let end = pool.output.count
        guard end > start || closeWhenSent else { return }
        segment = start..<end
        queued = true
        pool.queueWrite(self)
    }

    /// Writes its queued responses; keeps what the socket did not take and waits
    /// until it is writable. Called by `PoolContext.flushWrites`.
    func writeQueued() {
        queued = false
        guard !closed else { return }
        let bytes = UnsafeRawBufferPointer(rebasing: pool.output.bytes[segment])
        if !bytes.isEmpty {
            let written = writeSome(bytes)
            guard written >= 0 else {
                close()
                return
            }
            lastActivity = loop.now
            if written < bytes.count {
                let kept = IOBuffer(capacity: bytes.count - written)
                kept.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
                unsent = kept
                watch(BH_EVENT_WRITE)
                return
            }
        }
        if closeWhenSent {
            closeInOrder()
        } else if moreToServe {
            // Served in a later turn, once the socket can take more.
            watch(BH_EVENT_WRITE)
        }
    }

    private func writeUnsent() {
        guard let unsent else { return }
        let written = writeSome(unsent.bytes)
        guard written >= 0 else {
            close()
            return
        }
        unsent.consume(written)
        if written > 0 { lastActivity = loop.now }
        guard unsent.isEmpty else { return }
        self.unsent = nil
        if closeWhenSent {
            closeInOrder()
        } else if moreToServe {
            serveBuffered()
        } else {
            watch(BH_EVENT_READ)
        }
    }

    /// Writes as much of `bytes` as the socket takes now: the count, or -1 when the
    /// connection failed.
    private func writeSome(_ bytes: UnsafeRawBufferPointer) -> Int {
        var written = 0
        while written < bytes.count {
            let count = send(fd, bytes.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL))
            if count > 0 {
                written += count
            } else if count < 0 && errno == EINTR {
                continue
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                return -1
            }
        }
        return written
    }

    /// Closes a connection the client may still be sending on, the way the client
    /// can tell from a failure: shuts the sending side (the client reads the
    /// answers, then end of input), reads and drops whatever still comes, and closes
    /// when the client does, or after `lingerTimeout`. Closing at once over unread
    /// bytes would send a reset, which can destroy answers the client has not read
    /// yet (a request pipelined behind `Connection: close`, or sent just as a drain
    /// closes an idle connection). nginx's lingering close does the same.
    private func closeInOrder() {
        guard !closed, lingeringSince == 0 else { return }
        guard shutdown(fd, Int32(SHUT_WR)) == 0 else {
            close()
            return
        }
        lingeringSince = max(loop.now, 1)
        pending = nil
        moreToServe = false
        watch(BH_EVENT_READ)
    }

    /// Lingering: reads and drops the client's bytes until it closes.
    private func dropInput() {
        let room = pool.input.reserve(Self.readSize)
        var count: Int
        repeat {
            count = recv(fd, room.baseAddress, room.count, 0)
        } while count < 0 && errno == EINTR
        if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { close() }
    }

    /// Closes the connection and forgets it.
    func close() {
        guard !closed else { return }
        closed = true
        loop.forget(fd)
        Glibc.close(fd)
        pending = nil
        unsent = nil
        pool.connectionClosed(self)
    }

    // MARK: Timeouts and drain

    /// Called about once a second: a request that has not arrived in full within
    /// `requestArrivalTimeout` gets 408; a connection idle, or stuck on a client
    /// that does not read, for `idleTimeout` is closed.
    func checkTimeouts(now: UInt64) {
        if lingeringSince != 0 {
            if now &- lingeringSince >= Self.lingerTimeout { close() }
            return
        }
        if queued { return }  // it made progress this turn
        // Waiting on the client: to send a request, or to read what it was sent
        // (unsent answers, or pipelined requests held back until it does).
        if unsent != nil || moreToServe {
            // It does not read: nothing to close in order for.
            if now &- lastActivity >= Self.idleTimeout { close() }
        } else if pending == nil {
            if now &- lastActivity >= Self.idleTimeout { closeInOrder() }
        } else if arrivalStartedAt != 0 && now &- arrivalStartedAt >= Self.requestArrivalTimeout {
            pending = nil
            let outputStart = pool.output.count
            writeTimeout()
            closeWhenSent = true
            queueOutput(from: outputStart)
        }
    }

    /// The worker drains: close now if idle, else once the response under way is
    /// out (a request still arriving is served first, with `connection: close`).
    /// A connection whose next request has reached the socket but not been read yet
    /// is not idle: its client sent it on a connection it had every reason to
    /// reuse, so it is served (with `connection: close`) rather than dropped.
    func closeWhenIdle() {
        if lingeringSince != 0 {
            return
        } else if isIdle && !hasUnreadBytes {
            closeInOrder()
        } else if unsent != nil || queued {
            closeWhenSent = true
        }
    }

    /// Whether the client's bytes wait in the socket, unread.
    private var hasUnreadBytes: Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }
}
