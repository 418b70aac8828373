import HTTPWire

// MARK: - What a parse produced, as values a test can compare

/// A parsed request with every range read out as text, plus the header fields and the
/// body the parser held right after the call.
struct Decoded: Hashable, CustomStringConvertible {
    var method: String
    var knownMethod: HTTPMethod
    var target: String
    var path: String
    var query: String
    var host: String?
    var version: HTTPVersion
    var keepAlive: Bool
    var expectsContinue: Bool
    var contentLength: Int?
    var chunked: Bool
    var headers: [[String]]
    /// The body as text (see `text(_:)` for bytes that are not UTF-8).
    var body: String
    var bodyBytes: [UInt8]
    var headLength: Int
    var consumed: Int

    var description: String {
        "\(method) \(target) \(version) host=\(host ?? "nil") keepAlive=\(keepAlive) headers=\(headers) body=\(body.debugDescription) consumed=\(consumed)"
    }
}

/// One call's result, comparable.
enum Outcome: Hashable, CustomStringConvertible {
    case incomplete(HTTPIncomplete)
    case request(Decoded)
    case error(HTTPParseError)

    /// The same outcome without `shouldSendContinue`, which is true on one call only
    /// (so it depends on how the bytes were split, by design).
    var ignoringContinueSignal: Outcome {
        guard case .incomplete(var state) = self else { return self }
        state.shouldSendContinue = false
        return .incomplete(state)
    }

    /// A short name of the outcome for statistics: `request`, `incomplete` or the error.
    var kind: String {
        switch self {
        case .incomplete: "incomplete"
        case .request: "request"
        case .error(let error): error.description
        }
    }

    var isIncomplete: Bool {
        if case .incomplete = self { return true }
        return false
    }

    var request: Decoded? {
        if case .request(let decoded) = self { return decoded }
        return nil
    }

    var error: HTTPParseError? {
        if case .error(let error) = self { return error }
        return nil
    }

    var description: String {
        switch self {
        case .incomplete(let state): "incomplete(\(state))"
        case .request(let decoded): "request(\(decoded))"
        case .error(let error): "error(\(error))"
        }
    }
}

extension Array where Element == UInt8 {
    /// The UTF-8 bytes of `text`.
    init(text: String) {
        self = Array(text.utf8)
    }
}

func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    text(UnsafeRawBufferPointer(rebasing: bytes[range]))
}

/// `bytes` as text: decoded as UTF-8 when they are valid UTF-8, otherwise one scalar
/// per byte (U+0000–U+00FF), so different bytes never read as the same text.
///
/// Not `String(decoding:as:)`: repairing invalid UTF-8 throws inside the standard
/// library, and Swift Testing captures a backtrace for every throw, which made the
/// fuzzers spend most of their time unwinding.
func text<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
    if let valid = String(validating: bytes, as: UTF8.self) { return valid }
    var result = String.UnicodeScalarView()
    for byte in bytes { result.append(Unicode.Scalar(byte)) }
    return String(result)
}

// MARK: - Parsing helpers

/// Reads a result out of `parser` and `bytes` right after `parse` returned it. Checks
/// that no range leaves the buffer first (a violation is recorded as a failed
/// expectation by the caller through `violations`).
func outcome(
    of result: HTTPParseResult, parser: HTTPRequestParser, bytes: UnsafeRawBufferPointer,
    violations: inout [String]
) -> Outcome {
    switch result {
    case .incomplete(let state):
        return .incomplete(state)
    case .error(let error):
        return .error(error)
    case .request(let head):
        violations += rangeViolations(head, parser.headerFields, count: bytes.count)
        guard violations.isEmpty else { return .error(.invalidRequestLine) }
        let headers = parser.headerFields.map { [string(bytes, $0.name), string(bytes, $0.value)] }
        let body = parser.withBody(of: head, in: bytes) { Array($0) }
        if head.bodyLength != body.count {
            violations.append("body length \(head.bodyLength) but \(body.count) bytes")
        }
        var chunked = false
        if case .chunked = head.body { chunked = true }
        return .request(Decoded(
            method: string(bytes, head.method),
            knownMethod: head.knownMethod,
            target: string(bytes, head.target),
            path: string(bytes, head.path),
            query: string(bytes, head.query),
            host: head.host.map { string(bytes, $0) },
            version: head.version,
            keepAlive: head.keepAlive,
            expectsContinue: head.expectsContinue,
            contentLength: head.contentLength,
            chunked: chunked,
            headers: headers,
            body: text(body),
            bodyBytes: body,
            headLength: head.headLength,
            consumed: head.consumed
        ))
    }
}

/// Everything a request's ranges must respect: inside the buffer, in order, the body
/// after the head and before `consumed`.
func rangeViolations(_ head: HTTPRequestHead, _ fields: HTTPHeaderFields, count: Int) -> [String] {
    var problems: [String] = []
    func check(_ name: String, _ range: Range<Int>?, within limit: Int) {
        guard let range else { return }
        if range.lowerBound < 0 || range.upperBound > limit {
            problems.append("\(name) \(range) outside 0..<\(limit)")
        }
    }
    if head.consumed <= 0 || head.consumed > count {
        problems.append("consumed \(head.consumed) of \(count)")
    }
    if head.headLength <= 0 || head.headLength > head.consumed {
        problems.append("headLength \(head.headLength), consumed \(head.consumed)")
    }
    let headEnd = min(head.headLength, count)
    check("method", head.method, within: headEnd)
    check("target", head.target, within: headEnd)
    check("path", head.path, within: headEnd)
    check("query", head.query, within: headEnd)
    check("host", head.host, within: headEnd)
    if head.method.isEmpty { problems.append("empty method") }
    if head.headerCount != fields.count { problems.append("headerCount \(head.headerCount) != \(fields.count)") }
    for field in fields {
        check("header name", field.name, within: headEnd)
        check("header value", field.value, within: headEnd)
    }
    if case .contiguous(let range) = head.body {
        if range.lowerBound != head.headLength || range.upperBound != head.consumed {
            problems.append("body \(range), head \(head.headLength), consumed \(head.consumed)")
        }
    }
    return problems
}

/// Parses `input` in one call with a fresh parser.
func parseWhole(_ input: [UInt8], limits: HTTPParserLimits = HTTPParserLimits(), violations: inout [String]) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    return input.withUnsafeBytes { bytes in
        outcome(of: parser.parse(bytes), parser: parser, bytes: bytes, violations: &violations)
    }
}

/// Parses `input` in one call with a fresh parser; range violations become an error
/// outcome the test will not expect.
func parseWhole(_ text: String, limits: HTTPParserLimits = HTTPParserLimits()) -> Outcome {
    var violations: [String] = []
    let result = parseWhole(Array(text: text), limits: limits, violations: &violations)
    return violations.isEmpty ? result : .error(.invalidRequestLine)
}

/// Feeds one parser growing prefixes of `input` ending at each of `cuts` (ascending),
/// then the whole, as a server does when bytes trickle in, and returns the first
/// result that is not `.incomplete` (or the last `.incomplete`, without its continue
/// signal). Records a violation if 100 Continue was asked for more than once.
func parseFeeding(
    _ input: [UInt8], cuts: [Int], limits: HTTPParserLimits = HTTPParserLimits(),
    violations: inout [String], allIncomplete: inout [Outcome]
) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var last = Outcome.incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false))
    var continues = 0
    input.withUnsafeBytes { all in
        for cut in cuts + [input.count] where cut >= 0 && cut <= input.count {
            let prefix = UnsafeRawBufferPointer(rebasing: all[0..<cut])
            last = outcome(of: parser.parse(prefix), parser: parser, bytes: prefix, violations: &violations)
            guard case .incomplete(let state) = last else { return }
            allIncomplete.append(last)
            if state.shouldSendContinue { continues += 1 }
        }
    }
    if continues > 1 {
        violations.append("100 Continue asked \(continues) times")
    }
    return last.ignoringContinueSignal
}

/// `parseFeeding` with every prefix length: the byte-at-a-time client.
func parseByteAtATime(_ input: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> (Outcome, [String]) {
    var violations: [String] = []
    var incompletes: [Outcome] = []
    let result = parseFeeding(input, cuts: Array(0..<input.count), limits: limits, violations: &violations, allIncomplete: &incompletes)
    return (result, violations)
}

/// Parses every pipelined request in `input`, in order, with one parser, as a server
/// does within one read. Stops at the first result that is not a request.
func parsePipelined(_ input: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> [Outcome] {
    var parser = HTTPRequestParser(limits: limits)
    var outcomes: [Outcome] = []
    var violations: [String] = []
    input.withUnsafeBytes { all in
        var offset = 0
        while offset < all.count {
            let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
            let result = outcome(of: parser.parse(rest), parser: parser, bytes: rest, violations: &violations)
            outcomes.append(result)
            guard let request = result.request, violations.isEmpty else { return }
            offset += request.consumed
        }
    }
    return outcomes
}

/// A minimal valid HTTP/1.1 request head with `lines` between the request line and the
/// final empty line.
func request(_ requestLine: String = "GET / HTTP/1.1", _ lines: [String] = ["Host: example"], body: String = "") -> String {
    ([requestLine] + lines).map { $0 + "\r\n" }.joined() + "\r\n" + body
}
