import HTTPWire
import NIOCore

/// Byte tests the ingress needs on header names and values, on buffers it did not
/// parse with `HTTPRequestParser` (upstream responses) as well as ones it did.
enum Bytes {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C

    /// `byte` with A–Z mapped to a–z.
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- 0x41 < 26 ? byte | 0x20 : byte
    }

    /// Whether `bytes[range]` equals `literal` (lower-case), ignoring ASCII case.
    @inline(__always)
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard range.count == count, range.lowerBound >= 0, range.upperBound <= bytes.count else { return false }
        return literal.withUTF8Buffer { expected in
            var index = 0
            while index < count {
                if lowercased(bytes[range.lowerBound &+ index]) != expected[index] { return false }
                index &+= 1
            }
            return true
        }
    }

    /// `tchar` (RFC 9110 §5.6.2).
    @inline(__always)
    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
        default: false
        }
    }

    /// Whether a comma-separated header value (`Connection`) lists `token`.
    static func listContains(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, _ token: StaticString) -> Bool {
        var start = value.lowerBound
        while start < value.upperBound {
            var end = start
            while end < value.upperBound && bytes[end] != comma { end &+= 1 }
            var low = start
            var high = end
            while low < high && (bytes[low] == space || bytes[low] == tab) { low &+= 1 }
            while high > low && (bytes[high &- 1] == space || bytes[high &- 1] == tab) { high &-= 1 }
            if equalsIgnoringCase(bytes, low..<high, token) { return true }
            start = end &+ 1
        }
        return false
    }

    /// Whether a request header must not be forwarded as received: hop-by-hop fields
    /// (RFC 9110 §7.6.1), and the framing the ingress writes itself (it sends every
    /// body with a Content-Length, already whole, so `Expect` has nothing to wait for).
    static func isDroppedRequestHeader(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        switch name.count {
        case 2: equalsIgnoringCase(bytes, name, "te")
        case 6: equalsIgnoringCase(bytes, name, "expect")
        case 7: equalsIgnoringCase(bytes, name, "upgrade") || equalsIgnoringCase(bytes, name, "trailer")
        case 10: equalsIgnoringCase(bytes, name, "connection") || equalsIgnoringCase(bytes, name, "keep-alive")
        case 14: equalsIgnoringCase(bytes, name, "content-length")
        case 16: equalsIgnoringCase(bytes, name, "proxy-connection")
        case 17: equalsIgnoringCase(bytes, name, "transfer-encoding")
        default: false
        }
    }

    /// Whether a response header is the upstream hop's own and must not reach the
    /// client: the ingress writes its own `Connection`.
    static func isDroppedResponseHeader(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        switch name.count {
        case 2: equalsIgnoringCase(bytes, name, "te")
        case 7: equalsIgnoringCase(bytes, name, "upgrade") || equalsIgnoringCase(bytes, name, "trailer")
        case 10: equalsIgnoringCase(bytes, name, "connection") || equalsIgnoringCase(bytes, name, "keep-alive")
        case 16: equalsIgnoringCase(bytes, name, "proxy-connection")
        default: false
        }
    }
}

/// `HTTP/1.1 NNN Reason\r\n` for every status the ingress writes itself, built once.
struct StatusLines: Sendable {
    private let lines: [[UInt8]]

    init() {
        lines = (0..<600).map { Array("HTTP/1.1 \($0) \(HTTPStatus.reasonPhrase($0))\r\n".utf8) }
    }

    /// Writes the status line of `status` (500's for one out of range).
    func write(_ status: Int, into buffer: inout ByteBuffer) {
        buffer.writeBytes(lines.indices.contains(status) ? lines[status] : lines[500])
    }
}

