/// A strict HTTP/1.1 request parser that works in place on the inbound bytes of one
/// connection. Keep one per connection: after the first few requests it allocates
/// nothing (header ranges and a chunked body go into storage it reuses).
///
/// ## Use
/// ```swift
/// var parser = HTTPRequestParser(limits: pool.limits)
/// // on every read, with `bytes` = the unconsumed inbound bytes:
/// var offset = 0
/// loop: while offset < bytes.count {
///     let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
///     switch parser.parse(rest) {
///     case .request(let head):        // ranges index `rest`
///         respond(head, parser.headerFields, rest)
///         offset += head.consumed     // a pipelined request may follow
///         if !head.keepAlive { close(); break loop }
///     case .incomplete(let state):
///         if state.shouldSendContinue { write("HTTP/1.1 100 Continue\r\n\r\n") }
///         break loop                  // keep bytes[offset...], call again with more
///     case .error(let error):
///         respond(status: error.status); close(); break loop
///     }
/// }
/// ```
/// After `.incomplete`, call again with the same first byte and more bytes appended;
/// the parser remembers how far it got, so a head that trickles in a byte at a time
/// costs linear time. (Given fewer bytes than last time, it starts over.)
///
/// ## Rules
/// - Lines end with CRLF; a bare LF also ends a line of the head (RFC 9112 §2.2 allows
///   it, and some clients send it). A bare CR is refused everywhere. Chunk-size lines,
///   chunk data and trailers need CRLF exactly: that is where smuggling hides.
/// - Empty lines before the request line are skipped (and counted in `consumed`).
/// - The request-target is origin-form (`/path?query`) or absolute-form
///   (`http://host/path?query`, whose authority then replaces the Host header);
///   `*` and authority-form are refused.
/// - A line is judged once it is complete, so an error never depends on how the bytes
///   were split: every prefix of a buffer parses as `.incomplete` or as the whole does.
/// - Framing is decided when the head ends: Host present (HTTP/1.1), no
///   Transfer-Encoding in HTTP/1.0, not both Content-Length and Transfer-Encoding, and
///   a Content-Length within `maxBodyBytes` (413 before any body arrives).
public struct HTTPRequestParser: Sendable {
    /// The limits applied to every request from the next `parse` call on.
    public var limits: HTTPParserLimits
    /// When true, the `parse` call that completes the head of a request with a body
    /// (a Content-Length above 0, or chunked) returns `.incomplete` with `headComplete`
    /// before looking at any of the body, even when the body is there. A proxy that
    /// learns the request's destination from its head (`headInProgress`) sets the
    /// destination's body limit then and calls `parse` again: no chunk size is
    /// accepted under the limit the head was parsed with. False by default: a server
    /// with one limit needs no stop.
    public var stopsAfterHead = false

    /// The header fields of the request being parsed (or last parsed): the first
    /// `fieldCount` entries. The array only grows; entries are overwritten in place.
    var fields: [HTTPHeaderField] = []
    var fieldCount = 0
    /// The decoded chunked body of the request being parsed (or last parsed).
    var decodedBody: [UInt8] = []
    /// Everything known about the request in progress.
    var state = ParseState()

    /// The most chunked-body capacity kept between requests.
    static let retainedBodyCapacity = 64 * 1024

    /// A parser with these limits.
    public init(limits: HTTPParserLimits = HTTPParserLimits()) {
        self.limits = limits
        fields.reserveCapacity(16)
    }

    // MARK: - Parsing

    /// Parses the request at the start of `bytes`, the unconsumed inbound bytes of the
    /// connection. See the type's documentation for the calling pattern.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> HTTPParseResult {
        if !state.active || bytes.count < state.highWater {
            // A new request; or the caller broke the "same start, more bytes" contract,
            // and every offset remembered may be past the end: start again from scratch.
            begin()
        }
        state.highWater = bytes.count

        if !state.headComplete {
            switch parseHead(bytes) {
            case .needMore:
                return .incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false))
            case .failed(let error):
                return fail(error)
            case .done:
                if stopsAfterHead && state.framing.hasBody {
                    // The 100 Continue is signalled by the next call, which waits for
                    // the body under the limit the caller sets now.
                    return .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: state.expectContinue, shouldSendContinue: false))
                }
            }
        }

        switch state.framing {
        case .none:
            return finish(body: .none, consumed: state.headEnd)
        case .length(let length):
            let (end, overflow) = state.headEnd.addingReportingOverflow(length)
            guard !overflow else { return fail(.bodyTooLarge) }
            guard bytes.count >= end else { return waitForBody() }
            return finish(body: .contiguous(state.headEnd..<end), consumed: end)
        case .chunked:
            switch parseChunked(bytes) {
            case .needMore:
                return waitForBody()
            case .failed(let error):
                return fail(error)
            case .done:
                return finish(body: .chunked(decodedLength: decodedBody.count), consumed: state.consumed)
            }
        }
    }

    /// Forgets the request in progress, if any. Not needed between requests (`parse`
    /// starts a new one after every `.request` or `.error`); use it when the buffer's
    /// start moved without a request being consumed.
    public mutating func reset() {
        state = ParseState()
    }

    /// Whether some bytes of a request have been seen but the request is not finished:
    /// a timeout now means a slow client (408), not an idle keep-alive connection.
    public var hasPartialRequest: Bool {
        state.active && state.highWater > 0
    }

    /// The head of the request in progress once it has been parsed and checked while
    /// its body is still arriving (after `.incomplete` with `headComplete`); nil
    /// otherwise. A proxy routes with it and lowers `limits.maxBodyBytes` for the
    /// request's destination before the body is buffered (see `stopsAfterHead`): the
    /// Content-Length was only checked against the limit in force when the head ended,
    /// while each later chunk size is checked against the limit in force when it
    /// arrives.
    ///
    /// Its ranges index the bytes given to `parse`, as a whole request's do. Its
    /// `body` is what is known so far: the Content-Length range (which may run past
    /// the bytes received), or the chunked bytes decoded so far; `consumed` is the
    /// head's length until the request is whole.
    public var headInProgress: HTTPRequestHead? {
        guard state.active, state.headComplete else { return nil }
        let body: HTTPBody
        switch state.framing {
        case .none: body = .none
        case .length(let length):
            // `parse` refused a length whose end overflows; never trap on one here.
            let (end, overflow) = state.headEnd.addingReportingOverflow(length)
            body = .contiguous(state.headEnd..<(overflow ? Int.max : max(end, state.headEnd)))
        case .chunked: body = .chunked(decodedLength: decodedBody.count)
        }
        return head(body: body, consumed: state.headEnd)
    }

    // MARK: - Accessors for the last request

    /// The header fields of the last `.request` (valid until the next `parse`), in the
    /// order sent; index `0..<head.headerCount`.
    public var headerFields: HTTPHeaderFields {
        HTTPHeaderFields(fields: fields, fieldCount: min(fieldCount, fields.count))
    }

    /// The value of the first header field named `name` (compared case-insensitively),
    /// in the last request parsed from `bytes`.
    public func firstValue(forHeader name: StaticString, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        for field in fields.prefix(fieldCount) where ASCII.equalsIgnoringCase(bytes, field.name, name) {
            return field.value
        }
        return nil
    }

    /// Calls `body` with the body of `head` (the last request parsed from `bytes`): a
    /// slice of `bytes` for a Content-Length body, the decoded bytes for a chunked one,
    /// an empty buffer when there is none. The buffer is valid only inside `body`.
    public func withBody<Result>(
        of head: HTTPRequestHead,
        in bytes: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        switch head.body {
        case .none:
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .contiguous(let range):
            // A head from another buffer must not read out of this one.
            guard range.lowerBound >= 0, range.upperBound <= bytes.count else {
                return try body(UnsafeRawBufferPointer(start: nil, count: 0))
            }
            return try body(UnsafeRawBufferPointer(rebasing: bytes[range]))
        case .chunked(let decodedLength):
            return try decodedBody.withUnsafeBytes { decoded in
                try body(UnsafeRawBufferPointer(rebasing: decoded[0..<max(0, min(decodedLength, decoded.count))]))
            }
        }
    }

    // MARK: - Steps

    /// Starts a new request: clears the state and the reused storage, keeping capacity.
    private mutating func begin() {
        state = ParseState()
        state.active = true
        fieldCount = 0
        if !decodedBody.isEmpty {
            // Keep a small buffer for the next chunked body; give back a large one, or
            // every connection that once received a big upload would hold on to it.
            if decodedBody.capacity > Self.retainedBodyCapacity {
                decodedBody = []
            } else {
                decodedBody.removeAll(keepingCapacity: true)
            }
        }
    }

    private mutating func fail(_ error: HTTPParseError) -> HTTPParseResult {
        state.active = false
        return .error(error)
    }

    private mutating func waitForBody() -> HTTPParseResult {
        let expects = state.expectContinue
        let sendNow = expects && !state.continueSignalled
        if sendNow { state.continueSignalled = true }
        return .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: expects, shouldSendContinue: sendNow))
    }

    private mutating func finish(body: HTTPBody, consumed: Int) -> HTTPParseResult {
        let request = head(body: body, consumed: consumed)
        state.active = false
        return .request(request)
    }

    /// The request head the state describes, with `body` and `consumed` as given.
    private func head(body: HTTPBody, consumed: Int) -> HTTPRequestHead {
        HTTPRequestHead(
            method: state.method,
            knownMethod: state.knownMethod,
            target: state.target,
            path: state.path,
            query: state.query,
            host: state.host,
            version: state.version,
            keepAlive: state.keepAlive,
            expectsContinue: state.expectContinue,
            contentLength: state.contentLength,
            body: body,
            headerCount: fieldCount,
            headLength: state.headEnd,
            consumed: consumed
        )
    }
}

// MARK: - State

/// The outcome of one step (the head, or the chunked body) on the bytes at hand.
enum ParseStep {
    case needMore
    case done
    case failed(HTTPParseError)
}

/// How the body is framed, decided when the head ends.
enum BodyFraming: Sendable {
    case none
    case length(Int)
    case chunked

    /// Whether any body byte is to come (`Content-Length: 0` has none).
    var hasBody: Bool {
        switch self {
        case .none, .length(0): false
        case .length, .chunked: true
        }
    }
}

/// What the Transfer-Encoding fields said, all of them read as one list of codings.
enum TransferEncoding: Sendable {
    /// No Transfer-Encoding field.
    case none
    /// Exactly `chunked`.
    case chunked
    /// Ends with `chunked`, with another coding (or a second `chunked`) before it.
    case otherThenChunked
    /// Does not end with `chunked`: the body's length cannot be known.
    case notEndingInChunked
}

/// Where the chunked decoder is.
enum ChunkStage: Sendable {
    /// At the start of a chunk-size line.
    case sizeLine
    /// Inside chunk data, with this many bytes to go.
    case data(remaining: Int)
    /// Right after chunk data, where CRLF must be.
    case dataEnd
    /// After the last chunk, in the trailer section.
    case trailers
}

/// Everything the parser knows about the request in progress. Offsets index the
/// buffer, whose start stays put between calls until the request is finished.
struct ParseState: Sendable {
    /// A request is in progress (false after a result, so the next call starts anew).
    var active = false
    /// The buffer size of the last call.
    var highWater = 0

    // Head scanning.
    /// Where the first line not yet judged starts.
    var lineStart = 0
    /// No LF in `lineStart..<scanFrom` (or, in the chunked body, between the current
    /// line start and `scanFrom`): where to resume looking for one.
    var scanFrom = 0
    var requestLineDone = false
    var headComplete = false
    /// Where the head ends (after its empty line).
    var headEnd = 0

    // The request line.
    var method = 0..<0
    var knownMethod = HTTPMethod.other
    var target = 0..<0
    var path = 0..<0
    var query = 0..<0
    var version = HTTPVersion.http1_1
    /// The authority of an absolute-form target.
    var authority: Range<Int>?

    // What the header fields said.
    var host: Range<Int>?
    var contentLength: Int?
    var transferEncoding = TransferEncoding.none
    var connectionClose = false
    var connectionKeepAlive = false
    var expectContinue = false

    // Decided at the end of the head.
    var keepAlive = false
    var framing = BodyFraming.none
    var continueSignalled = false

    // The chunked body.
    var chunkStage = ChunkStage.sizeLine
    /// Where the chunked decoder resumes.
    var chunkPosition = 0
    /// Where the trailer section starts.
    var trailerStart = 0
    /// The end of the request once the chunked body is done.
    var consumed = 0
}
