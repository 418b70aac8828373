/// One parsed request: where its parts are in the bytes given to
/// `HTTPRequestParser.parse(_:)`, and what its head decided. No strings, no copies:
/// every `Range<Int>` indexes that buffer, so read them before the buffer changes.
/// Header fields and a chunked body live in the parser until its next `parse` call.
public struct HTTPRequestHead: Hashable, Sendable {
    /// The method token, e.g. `GET`.
    public internal(set) var method: Range<Int>
    /// The method, when it is a standard one.
    public internal(set) var knownMethod: HTTPMethod
    /// The whole request-target as sent (path, `?` and query, or the absolute form).
    public internal(set) var target: Range<Int>
    /// The path: the target before `?`, starting with `/`. For an absolute-form target
    /// (`http://host/p?q`) it is the part after the authority; when that is empty
    /// (`http://host`), it is the last `/` of `://`, which reads `/` as it should.
    public internal(set) var path: Range<Int>
    /// The query: after the first `?`, without it. Empty (at the end of the path) when
    /// there is no `?`.
    public internal(set) var query: Range<Int>
    /// The Host value, trimmed, port included; for an absolute-form target its
    /// authority, which takes precedence over the Host header (RFC 9112 §3.2.2). Nil
    /// only in an HTTP/1.0 request without Host. May be empty.
    public internal(set) var host: Range<Int>?
    /// HTTP/1.0 or HTTP/1.1 (HTTP/1.2 and up are read as 1.1, RFC 9110 §6.2).
    public internal(set) var version: HTTPVersion
    /// Whether the connection stays open after the response: HTTP/1.1 unless a
    /// Connection header lists `close`; HTTP/1.0 only if it lists `keep-alive` (and not
    /// `close`). When false, answer and close; do not parse what follows.
    public internal(set) var keepAlive: Bool
    /// Whether the request asked `Expect: 100-continue` (HTTP/1.1 only).
    public internal(set) var expectsContinue: Bool
    /// The Content-Length value, nil when there was none (and for a chunked body).
    public internal(set) var contentLength: Int?
    /// Where the body is.
    public internal(set) var body: HTTPBody
    /// How many header fields the parser holds for this request
    /// (`HTTPRequestParser.headerFields`).
    public internal(set) var headerCount: Int
    /// Bytes of the head, from the start of the buffer to the end of the empty line
    /// (including any empty lines before the request line).
    public internal(set) var headLength: Int
    /// Bytes of this request, head and body (chunked framing and trailers included). The
    /// next pipelined request starts here.
    public internal(set) var consumed: Int

    /// The body's length in bytes (decoded, for a chunked body).
    public var bodyLength: Int {
        switch body {
        case .none: 0
        case .contiguous(let range): range.count
        case .chunked(let decodedLength): decodedLength
        }
    }
}

/// HTTP/1.0 or HTTP/1.1.
public enum HTTPVersion: Hashable, Sendable {
    /// HTTP/1.0: close after the response unless keep-alive was asked; no chunked
    /// request bodies.
    case http1_0
    /// HTTP/1.1 (and 1.2 and up, read as 1.1).
    case http1_1

    /// The minor version: 0 or 1.
    public var minor: Int {
        self == .http1_0 ? 0 : 1
    }
}

/// Where a request's body is.
public enum HTTPBody: Hashable, Sendable {
    /// No Content-Length and no Transfer-Encoding: no body.
    case none
    /// A Content-Length body: this range of the parsed bytes (empty for
    /// `Content-Length: 0`).
    case contiguous(Range<Int>)
    /// A chunked body, decoded into the parser: read it with
    /// `HTTPRequestParser.withBody(of:in:_:)` before the next `parse`.
    case chunked(decodedLength: Int)
}
