import HTTPWire

// MARK: - A reference reading of a request, for differential fuzzing

/// A second reader of the grammar `HTTPRequestParser` implements, written for clarity
/// and not for speed: whole lines split on LF, Swift arrays, no fast paths, no state
/// carried between calls. Its character sets are spelled out from RFC 9110/9112 here
/// rather than taken from the parser's tables, so that a mistake in one shows up as a
/// disagreement with the other.
///
/// It reads the rules RFC 9112 fixes and the choices the parser documents where the
/// RFC leaves one open (a bare LF ends a head line; obs-fold, CL+TE, `Transfer-Encoding`
/// in HTTP/1.0, a second Transfer-Encoding field and asterisk/authority-form targets
/// are refused; equal repeated Content-Lengths pass), and the limits the same way
/// (only the first `maxHeadBytes` are looked at for the head; a chunk-size line is
/// looked for within `maxChunkLineBytes`; trailers within `maxHeadBytes`).
///
/// It answers the category and the parts: which error is reported first is the
/// parser's business, so errors compare as "refused" (with a status from the set the
/// parser may answer).
enum ReferenceReader {
    // MARK: Character sets (RFC 9110 §5.6.2, RFC 3986)

    static let tchars: Set<UInt8> = Set(Array("!#$%&'*+-.^_`|~".utf8) + digits + letters)
    static let digits: [UInt8] = Array("0123456789".utf8)
    static let letters: [UInt8] = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    static let hexDigits: Set<UInt8> = Set(Array("0123456789abcdefABCDEF".utf8))
    /// A Host value or absolute-form authority: unreserved, sub-delims, `%`, `:`, `[`, `]`.
    static let hostChars: Set<UInt8> = Set(Array("-._~!$&'()*+,;=%:[]".utf8) + digits + letters)

    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let sp: UInt8 = 32
    static let htab: UInt8 = 9

    /// A byte of a request-target: visible ASCII but `#`.
    static func isTargetChar(_ byte: UInt8) -> Bool {
        byte >= 0x21 && byte <= 0x7E && byte != UInt8(ascii: "#")
    }

    /// A byte a field value may hold: HTAB, SP, visible ASCII, obs-text.
    static func isValueChar(_ byte: UInt8) -> Bool {
        byte == htab || (byte >= 0x20 && byte != 0x7F)
    }

    static func isOWS(_ byte: UInt8) -> Bool {
        byte == sp || byte == htab
    }

    static func lower(_ bytes: ArraySlice<UInt8>) -> String {
        HTTPWireTests.text(bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 })
    }

    static func text(_ bytes: ArraySlice<UInt8>) -> String {
        HTTPWireTests.text(bytes)
    }

    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, isOWS(first) { slice = slice.dropFirst() }
        while let last = slice.last, isOWS(last) { slice = slice.dropLast() }
        return slice
    }

    // MARK: Reading

    /// What the parser must answer for `input` under `limits`, as an `Outcome` whose
    /// error is a placeholder (compare errors by category only).
    static func read(_ input: [UInt8], limits: HTTPParserLimits) -> Outcome {
        explain(input, limits: limits).outcome
    }

    /// `read`, with the reason for a refusal (for failure reports).
    static func explain(_ input: [UInt8], limits: HTTPParserLimits) -> (outcome: Outcome, why: String) {
        let maxHead = max(limits.maxHeadBytes, 0)
        let view = min(input.count, maxHead)
        func refused(_ why: String) -> (outcome: Outcome, why: String) { (.error(.invalidRequestLine), why) }
        func ok(_ outcome: Outcome) -> (outcome: Outcome, why: String) { (outcome, "") }
        let headIncomplete = Outcome.incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false))

        var request = RequestParts()
        var lineStart = 0
        var headEnd = -1
        // The head, a line at a time; nothing past `view` is looked at.
        while headEnd < 0 {
            guard let newline = input[lineStart..<view].firstIndex(of: lf) else {
                return input.count > 0 && input.count >= maxHead ? refused("head over maxHeadBytes") : ok(headIncomplete)
            }
            var line = input[lineStart..<newline]
            if line.last == cr { line = line.dropLast() }
            lineStart = newline + 1
            if line.contains(cr) { return refused("bare CR") }  // RFC 9112 §2.2
            if line.isEmpty {
                if request.method != nil { headEnd = lineStart }
                continue  // empty lines before the request line are skipped
            }
            if request.method == nil {
                guard readRequestLine(line, into: &request) else { return refused("request line") }
            } else {
                request.fieldLines += 1
                guard request.fieldLines <= max(limits.maxHeaderCount, 0) else { return refused("too many fields") }
                guard readFieldLine(line, into: &request) else { return refused("field line \(text(line).debugDescription)") }
            }
        }

        // Framing and the checks that need the whole head (RFC 9112 §3.2, §6).
        if request.version == "1.1" && request.host == nil { return refused("no Host") }
        if let authority = request.authority { request.host = authority }
        if !request.codings.isEmpty {
            // §6.1: no Transfer-Encoding in HTTP/1.0; §6.3: not with Content-Length, and
            // chunked must be last (400); another coding is not implemented (501).
            if request.version == "1.0" || request.contentLength != nil { return refused("Transfer-Encoding in 1.0 or with Content-Length") }
            guard request.codings == ["chunked"] else { return refused("codings \(request.codings)") }
            request.chunked = true
        }
        let keepAlive = !request.close && (request.version == "1.1" || request.keepAlive)
        let expects = request.expectContinue && request.version == "1.1"
        let bodyIncomplete = Outcome.incomplete(HTTPIncomplete(headComplete: true, expectsContinue: expects, shouldSendContinue: false))

        var body: [UInt8] = []
        var consumed = headEnd
        if request.chunked {
            switch readChunked(input, from: headEnd, limits: limits) {
            case .incomplete: return ok(bodyIncomplete)
            case .refused(let why): return refused(why)
            case .done(let decoded, let end):
                body = decoded
                consumed = end
            }
        } else if let length = request.contentLength {
            guard length <= max(limits.maxBodyBytes, 0) else { return refused("Content-Length over maxBodyBytes") }
            guard input.count - headEnd >= length else { return ok(bodyIncomplete) }
            body = Array(input[headEnd..<(headEnd + length)])
            consumed = headEnd + length
        }

        return ok(.request(Decoded(
            method: text(request.method ?? []),
            knownMethod: knownMethod(text(request.method ?? [])),
            target: text(request.target),
            path: text(request.path),
            query: text(request.query),
            host: request.host.map { text($0) },
            version: request.version == "1.0" ? .http1_0 : .http1_1,
            keepAlive: keepAlive,
            expectsContinue: expects,
            contentLength: request.chunked ? nil : request.contentLength,
            chunked: request.chunked,
            headers: request.fields.map { [text($0.0), text($0.1)] },
            body: HTTPWireTests.text(body),
            bodyBytes: body,
            headLength: headEnd,
            consumed: consumed
        )))
    }

    /// What the head has said so far.
    struct RequestParts {
        var method: ArraySlice<UInt8>?
        var target: ArraySlice<UInt8> = []
        var path: ArraySlice<UInt8> = []
        var query: ArraySlice<UInt8> = []
        var version = "1.1"
        var authority: ArraySlice<UInt8>?
        var host: ArraySlice<UInt8>?
        var fields: [(ArraySlice<UInt8>, ArraySlice<UInt8>)] = []
        var fieldLines = 0
        var contentLength: Int?
        var codings: [String] = []
        var chunked = false
        var close = false
        var keepAlive = false
        var expectContinue = false
    }

    /// `method SP request-target SP HTTP-version` (RFC 9112 §3), one space each.
    static func readRequestLine(_ line: ArraySlice<UInt8>, into request: inout RequestParts) -> Bool {
        let parts = line.split(separator: sp, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return false }
        let (method, target, version) = (parts[0], parts[1], parts[2])
        guard !method.isEmpty, method.allSatisfy({ tchars.contains($0) }) else { return false }
        // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive; only major 1 is served.
        let v = Array(version)
        guard v.count == 8, text(version.prefix(5)) == "HTTP/", digits.contains(v[5]), v[6] == UInt8(ascii: "."),
              digits.contains(v[7]), v[5] == UInt8(ascii: "1")
        else { return false }
        request.version = v[7] == UInt8(ascii: "0") ? "1.0" : "1.1"
        guard !target.isEmpty, target.allSatisfy(isTargetChar) else { return false }
        request.method = method
        request.target = target
        let question = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        request.query = question < target.endIndex ? target[(question + 1)...] : target[target.endIndex...]
        if target.first == UInt8(ascii: "/") {
            request.path = target[..<question]
            return true
        }
        // absolute-form, http or https, any case (RFC 9112 §3.2.2).
        let lowered = lower(target)
        let scheme = lowered.hasPrefix("http://") ? 7 : (lowered.hasPrefix("https://") ? 8 : 0)
        guard scheme > 0 else { return false }
        let afterScheme = target.index(target.startIndex, offsetBy: scheme)
        let beforeQuery = target[afterScheme..<question]
        let slash = beforeQuery.firstIndex(of: UInt8(ascii: "/")) ?? question
        let authority = target[afterScheme..<slash]
        guard !authority.isEmpty, authority.allSatisfy({ hostChars.contains($0) }) else { return false }
        request.authority = authority
        // An empty path reads as the `/` that ends `://`.
        request.path = slash < question ? target[slash..<question] : target[(afterScheme - 1)..<afterScheme]
        return true
    }

    /// `field-name ":" OWS field-value OWS` (RFC 9112 §5), and what the fields that
    /// decide framing, routing and the connection say.
    static func readFieldLine(_ line: ArraySlice<UInt8>, into request: inout RequestParts) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return false }
        let name = line[..<colon]
        // Also refuses obs-fold (a leading SP/HTAB) and whitespace before the colon.
        guard !name.isEmpty, name.allSatisfy({ tchars.contains($0) }) else { return false }
        let value = trimmed(line[(colon + 1)...])
        guard value.allSatisfy(isValueChar) else { return false }
        request.fields.append((name, value))
        switch lower(name) {
        case "host":
            guard request.host == nil, value.allSatisfy({ hostChars.contains($0) }) else { return false }
            request.host = value
        case "content-length":
            // 1*DIGIT; saturates (a huge value is over any limit, not a wrapped one).
            guard !value.isEmpty, value.allSatisfy({ digits.contains($0) }) else { return false }
            var length = 0
            for digit in value {
                let (times, o1) = length.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(Int(digit - 48))
                length = o1 || o2 ? Int.max : sum
            }
            if let previous = request.contentLength, previous != length { return false }
            request.contentLength = length
        case "transfer-encoding":
            // All fields form one list of codings (RFC 9110 §5.3).
            request.codings += value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map { lower(trimmed($0)) }
        case "connection":
            for option in value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
                switch lower(trimmed(option)) {
                case "close": request.close = true
                case "keep-alive": request.keepAlive = true
                default: break
                }
            }
        case "expect":
            if lower(value) == "100-continue" { request.expectContinue = true }
        default:
            break
        }
        return true
    }

    enum ChunkedReading {
        case incomplete
        case refused(String)
        case done(body: [UInt8], end: Int)
    }

    /// `*chunk last-chunk trailer-section CRLF` (RFC 9112 §7.1), CRLF exactly.
    static func readChunked(_ input: [UInt8], from start: Int, limits: HTTPParserLimits) -> ChunkedReading {
        let maxLine = max(limits.maxChunkLineBytes, 0)
        let maxBody = max(limits.maxBodyBytes, 0)
        var position = start
        var body: [UInt8] = []
        while true {
            // chunk-size [ chunk-ext ] CRLF, found within maxLine bytes.
            let searchEnd = min(input.count, position + maxLine)
            guard let newline = input[position..<max(searchEnd, position)].firstIndex(of: lf) else {
                return input.count - position >= maxLine ? .refused("chunk line too long") : .incomplete
            }
            guard newline > position, input[newline - 1] == cr else { return .refused("chunk line not ended by CRLF") }
            let line = input[position..<(newline - 1)]
            let sizeDigits = line.prefix { hexDigits.contains($0) }
            guard !sizeDigits.isEmpty, let size = Int(text(sizeDigits), radix: 16) else { return .refused("chunk size") }
            // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): skipped, but
            // it must start with ";" after the whitespace and hold no controls but HTAB.
            let rest = line[(line.startIndex + sizeDigits.count)...]
            if !rest.isEmpty {
                let afterSpace = rest.drop(while: isOWS)
                guard afterSpace.first == UInt8(ascii: ";"), afterSpace.allSatisfy(isValueChar) else { return .refused("chunk extension") }
            }
            position = newline + 1
            if size == 0 { break }
            guard size <= maxBody - body.count else { return .refused("chunks over maxBodyBytes") }
            guard input.count - position >= size else { return .incomplete }
            body += input[position..<(position + size)]
            position += size
            // CRLF after the data, judged a byte at a time.
            guard position < input.count else { return .incomplete }
            guard input[position] == cr else { return .refused("no CR after chunk data") }
            guard position + 1 < input.count else { return .incomplete }
            guard input[position + 1] == lf else { return .refused("no LF after chunk data") }
            position += 2
        }
        // trailer-section: field lines, then CRLF; within maxHeadBytes in all.
        let trailerStart = position
        let maxSection = max(limits.maxHeadBytes, 0)
        while true {
            let searchEnd = min(input.count, trailerStart + maxSection)
            guard position < searchEnd, let newline = input[position..<searchEnd].firstIndex(of: lf) else {
                return input.count - trailerStart >= maxSection ? .refused("trailers over maxHeadBytes") : .incomplete
            }
            guard newline > position, input[newline - 1] == cr else { return .refused("trailer line not ended by CRLF") }
            let line = input[position..<(newline - 1)]
            if line.isEmpty { return .done(body: body, end: newline + 1) }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return .refused("trailer without colon") }
            let name = line[..<colon]
            guard !name.isEmpty, name.allSatisfy({ tchars.contains($0) }),
                  trimmed(line[(colon + 1)...]).allSatisfy(isValueChar)
            else { return .refused("trailer field") }
            position = newline + 1
        }
    }

    static func knownMethod(_ method: String) -> HTTPMethod {
        switch method {
        case "GET": .get
        case "HEAD": .head
        case "POST": .post
        case "PUT": .put
        case "DELETE": .delete
        case "OPTIONS": .options
        case "PATCH": .patch
        case "CONNECT": .connect
        case "TRACE": .trace
        default: .other
        }
    }
}

// MARK: - Requests RFC 9112 says a server must refuse

/// The RFC 9112 rules whose breach must never be read as a request, checked on the
/// raw head lines without any of the parser's code: a short list a reader can check
/// against the RFC line by line. Returns the rules `input` breaks (empty when none, or
/// when its head has not ended).
func rulesThatMustRefuse(_ input: [UInt8]) -> [String] {
    // The head: lines up to the first empty one after the request line.
    var lines: [ArraySlice<UInt8>] = []
    var start = 0
    var ended = false
    while let lf = input[start...].firstIndex(of: 10) {
        var line = input[start..<lf]
        if line.last == 13 { line = line.dropLast() }
        start = lf + 1
        if line.isEmpty {
            if lines.isEmpty { continue }
            ended = true
            break
        }
        lines.append(line)
    }
    guard ended, let requestLine = lines.first else { return [] }
    let fields = lines.dropFirst()
    var broken: [String] = []
    func name(_ line: ArraySlice<UInt8>) -> String {
        ReferenceReader.lower(line.prefix { $0 != UInt8(ascii: ":") })
    }
    func value(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return [] }
        return ReferenceReader.trimmed(line[(colon + 1)...])
    }
    if lines.contains(where: { $0.contains(13) }) {
        broken.append("bare CR (§2.2)")
    }
    if fields.contains(where: { $0.first == 32 || $0.first == 9 }) {
        broken.append("obs-fold or whitespace before the first field (§2.2, §5.2)")
    }
    if fields.contains(where: { line in
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return false }
        return line[colon - 1] == 32 || line[colon - 1] == 9
    }) {
        broken.append("whitespace between field name and colon (§5.1)")
    }
    if fields.contains(where: { value($0).contains { $0 == 0 || $0 == 13 || $0 == 10 } }) {
        broken.append("NUL, CR or LF in a field value (RFC 9110 §5.5)")
    }
    let names = fields.map(name)
    let hasTE = names.contains("transfer-encoding")
    // Every element of every Content-Length field (RFC 9110 §8.6 lets a recipient take
    // a list of one repeated value, so a list is not by itself a reason).
    let lengths = fields.filter { name($0) == "content-length" }
        .flatMap { value($0).split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) }
        .map { Array(ReferenceReader.trimmed($0)) }
    if hasTE && !lengths.isEmpty {
        broken.append("Content-Length with Transfer-Encoding (§6.3: refused, the smuggling shape)")
    }
    let digits = Set(Array("0123456789".utf8))
    if lengths.contains(where: { $0.isEmpty || !$0.allSatisfy(digits.contains) }) {
        broken.append("a Content-Length that is not 1*DIGIT (§6.3)")
    } else if Set(lengths.map { text($0.drop { $0 == UInt8(ascii: "0") }) }).count > 1 {
        broken.append("Content-Length values that differ (§6.3)")
    }
    let hosts = names.filter { $0 == "host" }.count
    let http11 = requestLine.suffix(8).elementsEqual("HTTP/1.1".utf8)
    if hosts > 1 || (http11 && hosts == 0) {
        broken.append("no Host or more than one in HTTP/1.1 (§3.2)")
    }
    if hasTE && requestLine.suffix(8).elementsEqual("HTTP/1.0".utf8) {
        broken.append("Transfer-Encoding in HTTP/1.0 (§6.1)")
    }
    return broken
}
