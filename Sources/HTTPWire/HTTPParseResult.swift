/// What one call to `HTTPRequestParser.parse(_:)` found.
public enum HTTPParseResult: Hashable, Sendable {
    /// More bytes are needed. Keep the bytes and call `parse` again with the same start
    /// and more bytes appended.
    case incomplete(HTTPIncomplete)
    /// A whole request, head and body. Its ranges index the bytes given to `parse`;
    /// `consumed` says where the next pipelined request starts.
    case request(HTTPRequestHead)
    /// The request is refused: answer `error.status` and close the connection.
    case error(HTTPParseError)
}

/// Where an incomplete request stands, so the server can answer `100 Continue` once.
public struct HTTPIncomplete: Hashable, Sendable {
    /// The head has been parsed (and passed every check); the body is still arriving.
    public var headComplete: Bool
    /// The head asked `Expect: 100-continue` in an HTTP/1.1 request (it is ignored in
    /// HTTP/1.0, RFC 9110 §10.1.1). Other expectations are ignored.
    public var expectsContinue: Bool
    /// True exactly once per request: on the first `.incomplete` after a head that
    /// expects 100-continue. Write `HTTP/1.1 100 Continue\r\n\r\n` then. Never true
    /// when the head was refused (413 and the rest come as `.error`) or when the whole
    /// body was already there.
    public var shouldSendContinue: Bool

    /// An incomplete result.
    public init(headComplete: Bool, expectsContinue: Bool, shouldSendContinue: Bool) {
        self.headComplete = headComplete
        self.expectsContinue = expectsContinue
        self.shouldSendContinue = shouldSendContinue
    }
}
