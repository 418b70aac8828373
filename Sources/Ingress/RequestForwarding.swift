import HTTPWire
import NIOCore

/// Writes the request the upstream pool gets for a request the ingress parsed.
///
/// - The request line keeps the method and target as sent, as HTTP/1.1, so the
///   upstream connection stays open for the next request whatever the client spoke.
/// - Header fields are copied in order, except the hop-by-hop ones (`Connection`,
///   `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade`, `Trailer`), the framing
///   (`Content-Length`, `Transfer-Encoding`) and `Expect`.
/// - A Host is added when the client sent none (HTTP/1.0): the absolute-form
///   target's authority, or `127.0.0.1`, which routes by path as no Host does.
/// - `x-forwarded-for: CLIENT` is added after any the client sent.
/// - The body, whole (a chunked one decoded), follows with its Content-Length.
enum RequestForwarding {
    /// Appends the forwarded request to `output`.
    static func write(
        _ head: HTTPRequestHead,
        fields: HTTPHeaderFields,
        bytes: UnsafeRawBufferPointer,
        body: UnsafeRawBufferPointer,
        forwardedFor: [UInt8],
        into output: inout ByteBuffer
    ) {
        output.reserveCapacity(minimumWritableBytes: head.headLength &+ forwardedFor.count &+ body.count &+ 64)
        output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.method]))
        output.writeStaticString(" ")
        output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.target]))
        output.writeStaticString(" HTTP/1.1\r\n")
        var sawHost = false
        let count = min(head.headerCount, fields.count)
        for index in 0..<count {
            let field = fields[index]
            if field.name.count == 4 && Bytes.equalsIgnoringCase(bytes, field.name, "host") {
                sawHost = true
            } else if Bytes.isDroppedRequestHeader(bytes, field.name) {
                continue
            }
            output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
            output.writeStaticString(": ")
            output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
            output.writeStaticString("\r\n")
        }
        if !sawHost {
            output.writeStaticString("host: ")
            if let host = head.host, !host.isEmpty {
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[host]))
            } else {
                output.writeStaticString("127.0.0.1")
            }
            output.writeStaticString("\r\n")
        }
        output.writeBytes(forwardedFor)
        switch head.body {
        case .none:
            break
        case .contiguous, .chunked:
            output.writeStaticString("content-length: ")
            output.writeString(String(body.count))
            output.writeStaticString("\r\n")
        }
        output.writeStaticString("\r\n")
        output.writeBytes(body)
    }

    /// The `x-forwarded-for` line for a client at `address` (empty when unknown).
    static func forwardedForLine(_ address: SocketAddress?) -> [UInt8] {
        guard let ip = address?.ipAddress else { return [] }
        return Array("x-forwarded-for: \(ip)\r\n".utf8)
    }
}
