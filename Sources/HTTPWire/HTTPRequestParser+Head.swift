// MARK: - The head: request line and header fields

extension HTTPRequestParser {
    /// Judges the complete lines of the head from `state.lineStart` on. Sets
    /// `state.headComplete` and returns `.done` at the empty line that ends the head.
    ///
    /// Each line is first offered to a one-pass fast path that only accepts the common,
    /// valid shapes; anything else (an error, an unusual form, a line not complete yet)
    /// goes to the general path, which finds the line's end first and then judges it.
    /// Both give the same result on what the fast path accepts.
    mutating func parseHead(_ bytes: UnsafeRawBufferPointer) -> ParseStep {
        let maxHead = max(limits.maxHeadBytes, 0)
        // Nothing past the first maxHeadBytes is ever looked at, so a head that is too
        // large is refused (431) the same way whichever way its bytes were split.
        let view = min(bytes.count, maxHead)
        var lineStart = state.lineStart
        while true {
            // Only for a line not scanned before: otherwise a line trickling in a byte
            // at a time would be re-read from its start on every call.
            if lineStart >= state.scanFrom {
                if state.requestLineDone {
                    switch fastFieldLine(bytes, lineStart, view) {
                    case .line(let next):
                        lineStart = next
                        continue
                    case .headEnd(let next):
                        state.headEnd = next
                        return finishHead()
                    case .failed(let error):
                        return .failed(error)
                    case .fallBack:
                        break
                    }
                } else if let next = fastRequestLine(bytes, lineStart, view) {
                    state.requestLineDone = true
                    lineStart = next
                    continue
                }
            }

            // `scanFrom` remembers where the last call stopped looking for the end of
            // this line: a head sent a byte at a time is scanned once, not once per byte.
            guard let lf = ASCII.firstLF(in: bytes, from: max(lineStart, state.scanFrom), to: view) else {
                state.lineStart = lineStart
                state.scanFrom = max(view, lineStart)
                if bytes.count > 0 && bytes.count >= maxHead {
                    return .failed(.headTooLarge)
                }
                return .needMore
            }
            var lineEnd = lf
            if lineEnd > lineStart && bytes[lineEnd &- 1] == ASCII.cr {
                lineEnd &-= 1
            }
            if lineEnd == lineStart {
                if state.requestLineDone {
                    state.headEnd = lf &+ 1
                    return finishHead()
                }
                // RFC 9112 §2.2: empty lines before the request line are ignored (a
                // client may send CRLF after a POST body).
            } else if !state.requestLineDone {
                if let error = parseRequestLine(bytes, lineStart, lineEnd) {
                    return .failed(lineError(error, bytes, lineStart, lineEnd))
                }
                state.requestLineDone = true
            } else if let error = parseFieldLine(bytes, lineStart, lineEnd) {
                return .failed(lineError(error, bytes, lineStart, lineEnd))
            }
            lineStart = lf &+ 1
        }
    }

    // MARK: Fast path

    /// "HTTP/1.1" and "HTTP/1.0" read as little-endian words.
    private static let http11Word: UInt64 = 0x312E_312F_5054_5448
    private static let http10Word: UInt64 = 0x302E_312F_5054_5448

    /// `TOKEN SP /origin-form SP HTTP/1.x` ending in CRLF or LF, in one pass. Returns
    /// where the next line starts; nil leaves the line to `parseRequestLine`.
    private mutating func fastRequestLine(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ view: Int) -> Int? {
        var index = start
        while index < view && ASCII.isTokenChar(bytes[index]) {
            index &+= 1
        }
        guard index > start, index < view, bytes[index] == ASCII.space else { return nil }
        let method = start..<index
        let targetStart = index &+ 1
        guard targetStart < view, bytes[targetStart] == ASCII.slash else { return nil }
        let (targetEnd, queryMark) = ASCII.scanTarget(bytes, from: targetStart, to: view)
        guard targetEnd < view, bytes[targetEnd] == ASCII.space else { return nil }
        let versionStart = targetEnd &+ 1
        guard view &- versionStart > 8, let base = bytes.baseAddress else { return nil }
        let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: versionStart, as: UInt64.self))
        let version: HTTPVersion
        if word == Self.http11Word {
            version = .http1_1
        } else if word == Self.http10Word {
            version = .http1_0
        } else {
            return nil
        }
        guard let next = Self.lineBreak(bytes, at: versionStart &+ 8, view) else { return nil }
        state.method = method
        state.knownMethod = HTTPMethod(bytes, method)
        state.target = targetStart..<targetEnd
        state.path = targetStart..<queryMark
        state.query = queryMark < targetEnd ? (queryMark &+ 1)..<targetEnd : targetEnd..<targetEnd
        state.version = version
        return next
    }

    /// What the fast path made of a line of the head.
    enum FastLine {
        /// A valid field line, recorded; the next line starts here.
        case line(next: Int)
        /// The empty line: the head ends here.
        case headEnd(next: Int)
        /// A valid field line that breaks a rule about its field (431, duplicate Host…).
        case failed(HTTPParseError)
        /// Anything else: let the general path judge it.
        case fallBack
    }

    /// `name ":" OWS value OWS` ending in CRLF or LF, or the empty line, in one pass: the
    /// search for the line's end is the check of the value.
    private mutating func fastFieldLine(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ view: Int) -> FastLine {
        guard start < view else { return .fallBack }
        let first = bytes[start]
        if first == ASCII.lf || first == ASCII.cr {
            guard let next = Self.lineBreak(bytes, at: start, view) else { return .fallBack }
            return .headEnd(next: next)
        }
        var index = ASCII.scanToken(bytes, from: start, to: view)
        guard index > start, index < view, bytes[index] == ASCII.colon else { return .fallBack }
        let name = start..<index
        index &+= 1
        while index < view && ASCII.isWhitespace(bytes[index]) {
            index &+= 1
        }
        let valueStart = index
        var stop = index
        while true {
            guard let found = ASCII.firstControl(in: bytes, from: stop, to: view) else { return .fallBack }
            stop = found
            guard bytes[found] == ASCII.tab else { break }
            stop &+= 1
        }
        guard let next = Self.lineBreak(bytes, at: stop, view) else { return .fallBack }
        var valueEnd = stop
        while valueEnd > valueStart && ASCII.isWhitespace(bytes[valueEnd &- 1]) {
            valueEnd &-= 1
        }
        if let error = addField(bytes, name, valueStart..<valueEnd) {
            return .failed(error)
        }
        return .line(next: next)
    }

    /// Where the next line starts when a line break (LF or CRLF) is at `index`.
    @inline(__always)
    private static func lineBreak(_ bytes: UnsafeRawBufferPointer, at index: Int, _ view: Int) -> Int? {
        guard index < view else { return nil }
        let byte = bytes[index]
        if byte == ASCII.lf { return index &+ 1 }
        if byte == ASCII.cr && index &+ 1 < view && bytes[index &+ 1] == ASCII.lf { return index &+ 2 }
        return nil
    }

    // MARK: General path

    /// A line with a CR inside never passes the syntax checks; say why precisely.
    private func lineError(
        _ error: HTTPParseError, _ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int
    ) -> HTTPParseError {
        if error.status == 400 && ASCII.containsCR(bytes, from: start, to: end) {
            return .bareCarriageReturn
        }
        return error
    }

    // MARK: Request line

    /// `method SP request-target SP HTTP-version` in `bytes[start..<end]` (line end
    /// excluded). Exactly one space between the parts.
    private mutating func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> HTTPParseError? {
        var index = start
        while index < end && ASCII.isTokenChar(bytes[index]) {
            index &+= 1
        }
        guard index < end else { return .invalidRequestLine }
        guard bytes[index] == ASCII.space else { return .invalidMethod }
        guard index > start else { return .invalidRequestLine }
        let method = start..<index

        // The version follows the last space; everything between is the target (which
        // then fails its own check if it holds a space).
        let targetStart = index &+ 1
        var versionStart = end
        while versionStart > targetStart && bytes[versionStart &- 1] != ASCII.space {
            versionStart &-= 1
        }
        let targetEnd = versionStart &- 1
        guard versionStart > targetStart, targetEnd > targetStart,
              bytes[targetStart] != ASCII.space, bytes[targetEnd &- 1] != ASCII.space
        else { return .invalidRequestLine }  // no version, or more than one space between parts

        // The version first: it says how to read the rest (`PRI * HTTP/2.0` is a 505,
        // not a bad target).
        guard end &- versionStart == 8,
              ASCII.equals(bytes, versionStart..<(versionStart &+ 5), "HTTP/"),
              ASCII.isDigit(bytes[versionStart &+ 5]),
              bytes[versionStart &+ 6] == ASCII.dot,
              ASCII.isDigit(bytes[versionStart &+ 7])
        else { return .invalidVersion }
        guard bytes[versionStart &+ 5] == ASCII.zero &+ 1 else { return .unsupportedVersion }
        // HTTP/1.2 and up are read as the highest 1.x we know (RFC 9110 §6.2).
        state.version = bytes[versionStart &+ 7] == ASCII.zero ? .http1_0 : .http1_1

        if let error = parseTarget(bytes, targetStart, targetEnd) {
            return error
        }
        state.method = method
        state.knownMethod = HTTPMethod(bytes, method)
        return nil
    }

    /// The request-target in `bytes[start..<end]` (not empty).
    private mutating func parseTarget(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> HTTPParseError? {
        let (targetEnd, queryMark) = ASCII.scanTarget(bytes, from: start, to: end)
        guard targetEnd == end else { return .invalidRequestTarget }
        state.target = start..<end
        state.query = queryMark < end ? (queryMark &+ 1)..<end : end..<end

        if bytes[start] == ASCII.slash {
            state.path = start..<queryMark
            return nil
        }

        // Absolute-form: a client talking to us as if we were a proxy, or a gateway
        // passing the full URI. RFC 9112 §3.2.2 makes a server accept it.
        let schemeLength: Int
        if ASCII.equalsLowercased(bytes, start..<min(start &+ 7, end), "http://") {
            schemeLength = 7
        } else if ASCII.equalsLowercased(bytes, start..<min(start &+ 8, end), "https://") {
            schemeLength = 8
        } else {
            return .invalidRequestTarget
        }
        let authorityStart = start &+ schemeLength
        var authorityEnd = authorityStart
        while authorityEnd < queryMark && bytes[authorityEnd] != ASCII.slash {
            authorityEnd &+= 1
        }
        guard authorityEnd > authorityStart else { return .invalidRequestTarget }
        var hostIndex = authorityStart
        while hostIndex < authorityEnd {
            guard ASCII.isHostChar(bytes[hostIndex]) else { return .invalidHost }
            hostIndex &+= 1
        }
        state.authority = authorityStart..<authorityEnd
        // `http://host` and `http://host?q` have an empty path, which means `/`: point
        // at the `/` that ends `://` so the range still reads what the path is.
        state.path = authorityEnd < queryMark ? authorityEnd..<queryMark : (authorityStart &- 1)..<authorityStart
        return nil
    }

    // MARK: Header fields

    /// `name ":" OWS value OWS` in `bytes[start..<end]` (not empty, line end excluded).
    private mutating func parseFieldLine(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> HTTPParseError? {
        if ASCII.isWhitespace(bytes[start]) {
            return .obsoleteLineFolding
        }
        guard let (name, value) = Self.splitField(bytes, start, end) else {
            return Self.fieldError(bytes, start, end)
        }
        return addField(bytes, name, value)
    }

    /// Records a syntactically valid field: counts it against the limit, stores it, and
    /// reads it if it is one that matters.
    @inline(__always)
    private mutating func addField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>, _ value: Range<Int>) -> HTTPParseError? {
        guard fieldCount < max(limits.maxHeaderCount, 0) else { return .tooManyHeaders }
        let field = HTTPHeaderField(name: name, value: value)
        if fieldCount < fields.count {
            fields[fieldCount] = field
        } else {
            fields.append(field)
        }
        fieldCount &+= 1
        return interpretField(bytes, name, value)
    }

    /// The name and the trimmed value of a valid field line, or nil.
    @inline(__always)
    static func splitField(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> (Range<Int>, Range<Int>)? {
        var index = start
        while index < end && ASCII.isTokenChar(bytes[index]) {
            index &+= 1
        }
        guard index < end, index > start, bytes[index] == ASCII.colon else { return nil }
        var valueStart = index &+ 1
        while valueStart < end && ASCII.isWhitespace(bytes[valueStart]) {
            valueStart &+= 1
        }
        var valueEnd = end
        while valueEnd > valueStart && ASCII.isWhitespace(bytes[valueEnd &- 1]) {
            valueEnd &-= 1
        }
        guard !ASCII.containsControl(bytes, from: valueStart, to: valueEnd) else { return nil }
        return (start..<index, valueStart..<valueEnd)
    }

    /// Why `splitField` refused a line that does not start with whitespace.
    static func fieldError(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> HTTPParseError {
        var index = start
        while index < end && ASCII.isTokenChar(bytes[index]) {
            index &+= 1
        }
        guard index < end else { return .missingColon }
        if bytes[index] == ASCII.colon {
            return index == start ? .invalidHeaderName : .invalidHeaderValue
        }
        var afterSpace = index
        while afterSpace < end && ASCII.isWhitespace(bytes[afterSpace]) {
            afterSpace &+= 1
        }
        if afterSpace > index && afterSpace < end && bytes[afterSpace] == ASCII.colon {
            return .whitespaceBeforeColon
        }
        return .invalidHeaderName
    }

    /// Records what the fields that decide framing, routing and the connection say.
    /// Names are matched by length first: most fields are none of these.
    private mutating func interpretField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>, _ value: Range<Int>) -> HTTPParseError? {
        switch name.count {
        case 4 where ASCII.equalsLowercased(bytes, name, "host"):
            guard state.host == nil else { return .duplicateHost }
            var index = value.lowerBound
            while index < value.upperBound {
                guard ASCII.isHostChar(bytes[index]) else { return .invalidHost }
                index &+= 1
            }
            state.host = value
        case 6 where ASCII.equalsLowercased(bytes, name, "expect"):
            if ASCII.equalsLowercased(bytes, value, "100-continue") {
                state.expectContinue = true
            }
        case 10 where ASCII.equalsLowercased(bytes, name, "connection"):
            // The two common values alone, before the general token list.
            if ASCII.equalsLowercased(bytes, value, "keep-alive") {
                state.connectionKeepAlive = true
            } else if ASCII.equalsLowercased(bytes, value, "close") {
                state.connectionClose = true
            } else {
                readConnectionOptions(bytes, value)
            }
        case 14 where ASCII.equalsLowercased(bytes, name, "content-length"):
            guard let length = Self.decimal(bytes, value) else { return .invalidContentLength }
            // The same value twice is harmless (RFC 9110 §8.6); two values are an attack
            // or a broken intermediary.
            if let previous = state.contentLength, previous != length {
                return .conflictingContentLength
            }
            state.contentLength = length
        case 17 where ASCII.equalsLowercased(bytes, name, "transfer-encoding"):
            // The fields form one list of codings, judged when the head ends. Only its
            // last element says whether the body's length is known (RFC 9112 §6.3);
            // anything before it is a coding we do not implement.
            if state.transferEncoding == .none && ASCII.equalsLowercased(bytes, value, "chunked") {
                state.transferEncoding = .chunked
            } else {
                state.transferEncoding = Self.endsWithChunked(bytes, value) ? .otherThenChunked : .notEndingInChunked
            }
        default:
            break
        }
        return nil
    }

    /// The `close` and `keep-alive` options of a Connection value (a comma-separated,
    /// case-insensitive token list; other options are ignored).
    private mutating func readConnectionOptions(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) {
        var index = value.lowerBound
        while index < value.upperBound {
            var elementEnd = index
            while elementEnd < value.upperBound && bytes[elementEnd] != ASCII.comma {
                elementEnd &+= 1
            }
            var tokenStart = index
            while tokenStart < elementEnd && ASCII.isWhitespace(bytes[tokenStart]) {
                tokenStart &+= 1
            }
            var tokenEnd = elementEnd
            while tokenEnd > tokenStart && ASCII.isWhitespace(bytes[tokenEnd &- 1]) {
                tokenEnd &-= 1
            }
            if ASCII.equalsLowercased(bytes, tokenStart..<tokenEnd, "close") {
                state.connectionClose = true
            } else if ASCII.equalsLowercased(bytes, tokenStart..<tokenEnd, "keep-alive") {
                state.connectionKeepAlive = true
            }
            index = elementEnd &+ 1
        }
    }

    /// Whether the last element of a comma-separated list in `bytes[value]` (a checked
    /// field value, trimmed) is `chunked`, compared case-insensitively.
    static func endsWithChunked(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) -> Bool {
        var start = value.upperBound
        while start > value.lowerBound && bytes[start &- 1] != ASCII.comma {
            start &-= 1
        }
        while start < value.upperBound && ASCII.isWhitespace(bytes[start]) {
            start &+= 1
        }
        return ASCII.equalsLowercased(bytes, start..<value.upperBound, "chunked")
    }

    /// `1*DIGIT` in `bytes[range]`, saturating at `Int.max` (which is over any body
    /// limit, so a huge value is refused as too large, not wrapped).
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty else { return nil }
        var value = 0
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            guard ASCII.isDigit(byte) else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int(byte &- ASCII.zero))
            value = overflow1 || overflow2 ? Int.max : sum
            index &+= 1
        }
        return value
    }

    // MARK: End of the head

    /// The checks that need the whole head, and the framing of the body.
    private mutating func finishHead() -> ParseStep {
        let version = state.version
        if version == .http1_1 && state.host == nil {
            return .failed(.missingHost)
        }
        if let authority = state.authority {
            state.host = authority
        }
        if state.transferEncoding != .none {
            if version == .http1_0 {
                return .failed(.transferEncodingInHTTP10)
            }
            // Which of the two framings a front proxy believed is unknowable: refuse
            // (RFC 9112 §6.3 allows it, and it is the only safe answer).
            if state.contentLength != nil {
                return .failed(.contentLengthWithTransferEncoding)
            }
            switch state.transferEncoding {
            case .notEndingInChunked:
                // RFC 9112 §6.3: the server MUST answer 400 and close.
                return .failed(.chunkedNotFinal)
            case .otherThenChunked:
                // RFC 9112 §6.1: a coding the server does not understand, 501.
                return .failed(.unsupportedTransferEncoding)
            case .chunked, .none:
                state.framing = .chunked
            }
        } else if let length = state.contentLength {
            if length > max(limits.maxBodyBytes, 0) {
                return .failed(.bodyTooLarge)
            }
            state.framing = .length(length)
        } else {
            state.framing = .none
        }
        state.keepAlive = !state.connectionClose && (version == .http1_1 || state.connectionKeepAlive)
        state.expectContinue = state.expectContinue && version == .http1_1
        state.headComplete = true
        state.chunkPosition = state.headEnd
        state.scanFrom = state.headEnd
        return .done
    }
}
