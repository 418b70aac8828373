import HTTPWire
import NIOCore

/// Writes HTTP/1.1 responses into a connection's output buffer without building
/// Strings: status lines are prepared once, numbers are written digit by digit.
struct ResponseEncoder {
    /// `HTTP/1.1 NNN Reason\r\n` for every status 100...599.
    private let statusLines: [[UInt8]]
    /// `x-bulkhead-pool: NAME\r\nx-bulkhead-worker: PID\r\n`.
    let identityHeaders: [UInt8]

    init(pool: String, pid: Int32) {
        statusLines = (0..<600).map { code in
            Array("HTTP/1.1 \(code) \(HTTPStatus.reasonPhrase(code))\r\n".utf8)
        }
        identityHeaders = Array("x-bulkhead-pool: \(pool)\r\nx-bulkhead-worker: \(pid)\r\n".utf8)
    }

    /// Whether a header a script set must be dropped: bulkhead owns the framing and
    /// its own identity headers.
    static func isReserved(_ name: UnsafeRawBufferPointer) -> Bool {
        // Cheap reject first: every reserved name is 10 to 17 bytes long.
        guard name.count >= 10 && name.count <= 17 else { return false }
        return equalsIgnoringCase(name, "content-length") || equalsIgnoringCase(name, "transfer-encoding")
            || equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "x-bulkhead-pool")
            || equalsIgnoringCase(name, "x-bulkhead-worker") || equalsIgnoringCase(name, "keep-alive")
    }

    /// Writes the status line.
    func writeStatus(_ status: Int, into buffer: inout ByteBuffer) {
        let line = statusLines.indices.contains(status) ? statusLines[status] : statusLines[500]
        buffer.writeBytes(line)
    }

    /// Writes one header line.
    @inline(__always)
    func writeHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        buffer.writeBytes(name)
        buffer.writeStaticString(": ")
        buffer.writeBytes(value)
        buffer.writeStaticString("\r\n")
    }

    /// Writes the identity and framing headers, the blank line, and the body.
    ///
    /// - Parameter connection: `close` adds `connection: close`; `keepAlive10` adds
    ///   `connection: keep-alive` for an HTTP/1.0 client that asked for it.
    func writeTail(body: UnsafeRawBufferPointer, omitBody: Bool, connection: ConnectionHeader, into buffer: inout ByteBuffer) {
        buffer.writeBytes(identityHeaders)
        buffer.writeStaticString("content-length: ")
        Self.writeDecimal(body.count, into: &buffer)
        switch connection {
        case .none: buffer.writeStaticString("\r\n\r\n")
        case .close: buffer.writeStaticString("\r\nconnection: close\r\n\r\n")
        case .keepAlive: buffer.writeStaticString("\r\nconnection: keep-alive\r\n\r\n")
        }
        if !omitBody { buffer.writeBytes(body) }
    }

    /// What to say about the connection.
    enum ConnectionHeader {
        case none, close, keepAlive
    }

    /// Writes a non-negative integer in decimal.
    static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var remaining = max(0, value)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[19 - count] = UInt8(truncatingIfNeeded: 0x30 + remaining % 10)
                remaining /= 10
                count += 1
            } while remaining > 0 && count < 20
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[(20 - count)...]))
        }
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
