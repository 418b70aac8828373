import HTTPWire

/// Writes HTTP/1.1 responses into a connection's output buffer without building
/// Strings: status lines are prepared once, numbers are written digit by digit.
struct ResponseEncoder {
    /// `HTTP/1.1 NNN Reason\r\n` for every status 100...599.
    private let statusLines: [[UInt8]]
    /// `x-bulkhead-pool: NAME\r\nx-bulkhead-worker: PID\r\nx-request-id: NAME-PID-`:
    /// the request's number completes it.
    let identityHeaders: [UInt8]
    /// `NAME-PID-`, what every request id of this worker starts with.
    let requestIDPrefix: String

    init(pool: String, pid: Int32) {
        statusLines = (0..<600).map { code in
            Array("HTTP/1.1 \(code) \(HTTPStatus.reasonPhrase(code))\r\n".utf8)
        }
        requestIDPrefix = "\(pool)-\(pid)-"
        identityHeaders = Array("x-bulkhead-pool: \(pool)\r\nx-bulkhead-worker: \(pid)\r\nx-request-id: \(requestIDPrefix)".utf8)
    }

    /// A request's id as its answer and the script's log show it: `NAME-PID-N`.
    func requestID(_ number: UInt64) -> String {
        requestIDPrefix + String(number)
    }

    /// Whether a header a script set must be dropped: bulkhead owns the framing.
    /// (Its own `x-bulkhead-*` and `x-request-id` never get here: the sandbox's
    /// response conversion refuses them as a script error.)
    static func isReserved(_ name: UnsafeRawBufferPointer) -> Bool {
        // Cheap reject first: every reserved name is 10 to 17 bytes long.
        guard name.count >= 10 && name.count <= 17 else { return false }
        return equalsIgnoringCase(name, "content-length") || equalsIgnoringCase(name, "transfer-encoding")
            || equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "keep-alive")
    }

    /// Whether a response with `status` has no content and no Content-Length: 204
    /// and 304 (RFC 9110 §8.6, §15.3.5, §15.4.5). A script's body for them is already
    /// dropped by the sandbox's response conversion; a rule's block body is dropped
    /// by `writeTail`.
    @inline(__always)
    static func hasNoContent(_ status: Int) -> Bool {
        status == 204 || status == 304
    }

    /// Writes the status line.
    func writeStatus(_ status: Int, into buffer: IOBuffer) {
        let line = statusLines.indices.contains(status) ? statusLines[status] : statusLines[500]
        buffer.append(line)
    }

    /// Writes one header line.
    @inline(__always)
    func writeHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into buffer: IOBuffer) {
        buffer.append(name)
        buffer.append(": ")
        buffer.append(value)
        buffer.append("\r\n")
    }

    /// Writes the identity headers (with the request's id), the framing headers,
    /// the blank line, and the body.
    ///
    /// - Parameters:
    ///   - requestID: the request's number (`PoolContext.nextRequestID`).
    ///   - status: the response's status; a 204 or 304 gets neither Content-Length
    ///     nor body (``hasNoContent(_:)``).
    ///   - connection: `close` adds `connection: close`; `keepAlive10` adds
    ///   `connection: keep-alive` for an HTTP/1.0 client that asked for it.
    func writeTail(
        status: Int, body: UnsafeRawBufferPointer, omitBody: Bool, connection: ConnectionHeader, requestID: UInt64,
        into buffer: IOBuffer
    ) {
        buffer.append(identityHeaders)
        buffer.appendDecimal(Int(truncatingIfNeeded: requestID))
        buffer.append("\r\n")
        if Self.hasNoContent(status) {
            // The head ends the message (RFC 9112 §6.3): nothing may follow it.
            switch connection {
            case .none: buffer.append("\r\n")
            case .close: buffer.append("connection: close\r\n\r\n")
            case .keepAlive: buffer.append("connection: keep-alive\r\n\r\n")
            }
            return
        }
        buffer.append("content-length: ")
        buffer.appendDecimal(body.count)
        switch connection {
        case .none: buffer.append("\r\n\r\n")
        case .close: buffer.append("\r\nconnection: close\r\n\r\n")
        case .keepAlive: buffer.append("\r\nconnection: keep-alive\r\n\r\n")
        }
        if !omitBody { buffer.append(body) }
    }

    /// What to say about the connection.
    enum ConnectionHeader {
        case none, close, keepAlive
    }
}

/// Whether `bytes` equals the lower-case ASCII `lowercased`, ignoring ASCII case.
func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercased: StaticString) -> Bool {
    guard bytes.count == lowercased.utf8CodeUnitCount else { return false }
    let expected = lowercased.utf8Start
    for index in 0..<bytes.count {
        var byte = bytes[index]
        if byte >= 0x41 && byte <= 0x5A { byte |= 0x20 }
        if byte != expected[index] { return false }
    }
    return true
}
