#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// What the ingress needs to know of an upstream response's head to relay it.
struct ResponseHead: Hashable, Sendable {
    /// The status code.
    var status: Int
    /// Bytes of the head, up to and including the empty line that ends it.
    var length: Int
    /// The Content-Length, when there was one.
    var contentLength: Int?
    /// A Transfer-Encoding was sent (workers never send one; the ingress refuses it).
    var transferEncoding: Bool
    /// The upstream closes the connection after this response: `Connection: close`,
    /// or HTTP/1.0 without keep-alive.
    var upstreamCloses: Bool

    /// Whether a body follows the head, given the request's method (RFC 9112 §6.3).
    func hasBody(requestWasHead: Bool) -> Bool {
        !(requestWasHead || status == 204 || status == 304 || (100...199).contains(status))
    }
}

/// What `ResponseHeadRewriter.rewrite` found.
enum ResponseHeadResult: Hashable, Sendable {
    /// The head is not complete yet; nothing was written.
    case incomplete
    /// A whole, valid head: its status line and end-to-end fields were written.
    case head(ResponseHead)
    /// Not a valid HTTP/1.x response head; nothing was written.
    case invalid(String)
}

/// Parses an upstream response head in place and writes what the client gets of it.
///
/// The client's copy is the status line (as HTTP/1.1) and every field except the
/// upstream hop's own (`Connection`, `Keep-Alive`, …), without the empty line that
/// ends the head: the caller adds its own `Connection` field and the empty line.
/// Strict like the request parser: a response that could be read two ways (bare CR,
/// folded lines, disagreeing lengths) is refused rather than passed on.
enum ResponseHeadRewriter {
    /// The most header lines accepted in one response head.
    static let maxFields = 256

    /// Parses the head at the start of `bytes`. On `.head`, `output` has the client's
    /// copy appended; otherwise it is left as it was.
    static func rewrite(
        _ bytes: UnsafeRawBufferPointer, maxHeadBytes: Int, into output: inout ByteBuffer
    ) -> ResponseHeadResult {
        let mark = output.writerIndex
        let result = parse(bytes, maxHeadBytes: maxHeadBytes, into: &output)
        if case .head = result {} else { output.moveWriterIndex(to: mark) }
        return result
    }

    private static func parse(
        _ bytes: UnsafeRawBufferPointer, maxHeadBytes: Int, into output: inout ByteBuffer
    ) -> ResponseHeadResult {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .incomplete }
        var lineStart = 0
        var head = ResponseHead(status: 0, length: 0, contentLength: nil, transferEncoding: false, upstreamCloses: false)
        var http10 = false
        var keepAlive = false
        var fields = 0
        while true {
            guard lineStart < bytes.count,
                  let found = memchr(base + lineStart, Int32(Bytes.lf), bytes.count - lineStart)
            else {
                return bytes.count > maxHeadBytes ? .invalid("response head over \(maxHeadBytes) bytes") : .incomplete
            }
            let lf = base.distance(to: UnsafeRawPointer(found))
            guard lf < maxHeadBytes else { return .invalid("response head over \(maxHeadBytes) bytes") }
            let lineEnd = lf > lineStart && bytes[lf &- 1] == Bytes.cr ? lf &- 1 : lf
            let line = lineStart..<lineEnd
            lineStart = lf &+ 1

            if head.status == 0 {
                guard let status = statusCode(bytes, line) else { return .invalid("malformed status line") }
                head.status = status
                http10 = bytes[line.lowerBound &+ 7] == 0x30
                output.writeStaticString("HTTP/1.1 ")
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[(line.lowerBound &+ 9)..<line.upperBound]))
                output.writeStaticString("\r\n")
                continue
            }
            if line.isEmpty {
                head.length = lineStart
                head.upstreamCloses = head.upstreamCloses || (http10 && !keepAlive)
                if let conflict = framingConflict(head) { return .invalid(conflict) }
                return .head(head)
            }
            fields &+= 1
            guard fields <= maxFields else { return .invalid("more than \(maxFields) header fields") }
            guard let (name, value) = field(bytes, line) else { return .invalid("malformed header field") }
            switch name.count {
            case 14 where Bytes.equalsIgnoringCase(bytes, name, "content-length"):
                guard let length = decimal(bytes, value), head.contentLength == nil || head.contentLength == length else {
                    return .invalid("bad or conflicting Content-Length")
                }
                head.contentLength = length
            case 17 where Bytes.equalsIgnoringCase(bytes, name, "transfer-encoding"):
                head.transferEncoding = true
            case 10 where Bytes.equalsIgnoringCase(bytes, name, "connection"):
                if Bytes.listContains(bytes, value, "close") { head.upstreamCloses = true }
                if Bytes.listContains(bytes, value, "keep-alive") { keepAlive = true }
            default:
                break
            }
            if Bytes.isDroppedResponseHeader(bytes, name) { continue }
            output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[name]))
            output.writeStaticString(": ")
            output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[value]))
            output.writeStaticString("\r\n")
        }
    }

    /// Why a head whose status says "no body" (1xx, 204, 304) still announces one,
    /// or nil. RFC 9112 §6.3 ends such a response at its empty line whatever its
    /// fields say, so the bytes a sender wrote after it would be read as the next
    /// response: the way a script's status 100 with a body once forged a whole
    /// response head, `x-bulkhead-*` fields included. Sender and reader disagree on
    /// where the response ends, so the response is refused rather than guessed at
    /// (the upstream connection closes, the client gets 502).
    ///
    /// Stricter than RFC 9110, which allows a Content-Length on a 304: workers never
    /// send a 1xx with fields like these, nor a Content-Length on a 204 or 304, so one
    /// comes from a worker build that wrote the script's body after the head. On a 204
    /// or 304 a `Content-Length: 0` is harmless (both readings agree) and passes; on a
    /// 1xx any Content-Length means the sender took it for its final response (such a
    /// build answered a script's status 100 so), and waiting for another would hang.
    private static func framingConflict(_ head: ResponseHead) -> String? {
        // Built only for a refusal: this runs on every response.
        func field() -> String {
            head.transferEncoding ? "Transfer-Encoding" : "Content-Length: \(head.contentLength ?? 0)"
        }
        switch head.status {
        case 100...199:
            guard head.contentLength != nil || head.transferEncoding else { return nil }
            return "a \(head.status) (interim) response with \(field()); an interim response has no body"
        case 204, 304:
            guard (head.contentLength ?? 0) > 0 || head.transferEncoding else { return nil }
            return "a \(head.status) response with \(field()); a \(head.status) has no body"
        default:
            return nil
        }
    }

    /// `HTTP/1.x SP 3DIGIT [SP reason]`: the status, or nil.
    private static func statusCode(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> Int? {
        let start = line.lowerBound
        guard line.count >= 12,
              bytes[start] == 0x48, bytes[start &+ 1] == 0x54, bytes[start &+ 2] == 0x54, bytes[start &+ 3] == 0x50,
              bytes[start &+ 4] == 0x2F, bytes[start &+ 5] == 0x31, bytes[start &+ 6] == 0x2E,
              bytes[start &+ 7] == 0x30 || bytes[start &+ 7] == 0x31,
              bytes[start &+ 8] == Bytes.space,
              line.count == 12 || bytes[start &+ 12] == Bytes.space
        else { return nil }
        var status = 0
        for index in (start &+ 9)..<(start &+ 12) {
            let digit = bytes[index] &- 0x30
            guard digit < 10 else { return nil }
            status = status &* 10 &+ Int(digit)
        }
        guard status >= 100 else { return nil }
        // The reason phrase: no controls but HTAB (a bare CR is one).
        for index in (start &+ 12)..<line.upperBound {
            let byte = bytes[index]
            if (byte < Bytes.space && byte != Bytes.tab) || byte == 0x7F { return nil }
        }
        return status
    }

    /// `name ":" OWS value OWS`: the name and the trimmed value, or nil.
    private static func field(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> (Range<Int>, Range<Int>)? {
        var colon = line.lowerBound
        while colon < line.upperBound && Bytes.isTokenChar(bytes[colon]) { colon &+= 1 }
        // An empty name, whitespace before the colon, folding, or a byte no name has.
        guard colon > line.lowerBound, colon < line.upperBound, bytes[colon] == Bytes.colon else { return nil }
        var low = colon &+ 1
        var high = line.upperBound
        while low < high && (bytes[low] == Bytes.space || bytes[low] == Bytes.tab) { low &+= 1 }
        while high > low && (bytes[high &- 1] == Bytes.space || bytes[high &- 1] == Bytes.tab) { high &-= 1 }
        for index in low..<high {
            let byte = bytes[index]
            if (byte < Bytes.space && byte != Bytes.tab) || byte == 0x7F { return nil }
        }
        return (line.lowerBound..<colon, low..<high)
    }

    /// `1*DIGIT` that fits comfortably in an `Int`, or nil.
    private static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for index in range {
            let digit = bytes[index] &- 0x30
            guard digit < 10 else { return nil }
            value = value &* 10 &+ Int(digit)
        }
        return value
    }
}
