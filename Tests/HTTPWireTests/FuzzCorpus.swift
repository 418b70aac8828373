import HTTPWire
import Testing

// MARK: - What a request must parse as

/// The outcome RFC 9112 asks for, written down before the parser is run. Where the RFC
/// leaves the server a choice, the comment says so and which one bulkhead documents.
enum Expectation: CustomStringConvertible {
    /// A request; the parts given must read back so (nil: not checked).
    case request(RequestExpectation)
    /// Refused with one of these statuses.
    case refused(Set<Int>)
    /// Not whole yet: the head has ended (or not).
    case incomplete(headComplete: Bool)

    static func request(
        method: String? = nil, path: String? = nil, query: String? = nil, host: String?? = nil, body: String? = nil,
        keepAlive: Bool? = nil, expectsContinue: Bool? = nil, consumed: Int? = nil
    ) -> Expectation {
        .request(RequestExpectation(
            method: method, path: path, query: query, host: host, body: body, keepAlive: keepAlive,
            expectsContinue: expectsContinue, consumed: consumed))
    }

    static let badRequest = Expectation.refused([400])

    var description: String {
        switch self {
        case .request(let parts): "request(\(parts))"
        case .refused(let statuses): "refused(\(statuses.sorted()))"
        case .incomplete(let headComplete): "incomplete(headComplete: \(headComplete))"
        }
    }

    /// What is wrong with `outcome` (nil when it is what was expected). `inputCount`
    /// is the default for `consumed`: a single request uses the whole input.
    func mismatch(_ outcome: Outcome, inputCount: Int) -> String? {
        switch (self, outcome) {
        case (.refused(let statuses), .error(let error)):
            return statuses.contains(error.status) ? nil : "refused with \(error.status), expected one of \(statuses.sorted())"
        case (.incomplete(let headComplete), .incomplete(let state)):
            return state.headComplete == headComplete ? nil : "incomplete with headComplete \(state.headComplete)"
        case (.request(let parts), .request(let decoded)):
            return parts.mismatch(decoded, inputCount: inputCount)
        default:
            return "got \(outcome)"
        }
    }
}

/// The parts of a request a test pins down.
struct RequestExpectation: CustomStringConvertible {
    var method: String?
    var path: String?
    var query: String?
    /// `.some(nil)`: no host at all.
    var host: String??
    var body: String?
    var keepAlive: Bool?
    var expectsContinue: Bool?
    var consumed: Int?

    var description: String {
        [method.map { "method \($0)" }, path.map { "path \($0)" }, query.map { "query \($0)" },
         host.map { "host \($0 ?? "none")" }, body.map { "body \($0.debugDescription)" },
         keepAlive.map { "keepAlive \($0)" }, expectsContinue.map { "expectsContinue \($0)" },
         consumed.map { "consumed \($0)" }].compactMap { $0 }.joined(separator: ", ")
    }

    func mismatch(_ decoded: Decoded, inputCount: Int) -> String? {
        var problems: [String] = []
        if let method, decoded.method != method { problems.append("method \(decoded.method)") }
        if let path, decoded.path != path { problems.append("path \(decoded.path)") }
        if let query, decoded.query != query { problems.append("query \(decoded.query)") }
        if let host, decoded.host != host { problems.append("host \(decoded.host ?? "none")") }
        if let body, decoded.body != body { problems.append("body \(decoded.body.debugDescription)") }
        if let keepAlive, decoded.keepAlive != keepAlive { problems.append("keepAlive \(decoded.keepAlive)") }
        if let expectsContinue, decoded.expectsContinue != expectsContinue {
            problems.append("expectsContinue \(decoded.expectsContinue)")
        }
        if decoded.consumed != (consumed ?? inputCount) { problems.append("consumed \(decoded.consumed) of \(inputCount)") }
        return problems.isEmpty ? nil : "request read as: " + problems.joined(separator: ", ")
    }
}

/// An input with a name and the outcome it must have.
struct NamedInput: CustomStringConvertible, Sendable {
    var name: String
    var bytes: [UInt8]
    /// Built lazily from `expectation()`: `Expectation` holds a `Set`, which is fine,
    /// but keeping the entries `Sendable` keeps them usable as test arguments.
    var expect: @Sendable () -> Expectation

    init(_ name: String, _ text: String, _ expect: @escaping @Sendable @autoclosure () -> Expectation) {
        self.name = name
        self.bytes = Array(text.utf8)
        self.expect = expect
    }

    init(_ name: String, bytes: [UInt8], _ expect: @escaping @Sendable @autoclosure () -> Expectation) {
        self.name = name
        self.bytes = bytes
        self.expect = expect
    }

    var description: String { name }
}

/// Parses `input` whole and records an issue unless it has the outcome RFC 9112
/// asks for (and no parsed range falls outside the input).
func expectRFCOutcome(_ input: NamedInput, sourceLocation: SourceLocation = #_sourceLocation) {
    var violations: [String] = []
    let whole = parseWhole(input.bytes, violations: &violations)
    #expect(violations.isEmpty, "\(violations)", sourceLocation: sourceLocation)
    if let mismatch = input.expect().mismatch(whole, inputCount: input.bytes.count) {
        Issue.record("\(input.name): \(mismatch)", sourceLocation: sourceLocation)
    }
}

// MARK: - The seed corpus

/// Valid and nearly valid requests, the seeds the mutation fuzzer starts from. Each
/// carries its expected outcome from RFC 9112 (section numbers in the names' notes),
/// checked by `FuzzTests.corpus`, so the seeds are known to reach the paths they are
/// meant to reach before they are mutated.
enum FuzzCorpus {
    static let chunkedBody = "5;name=value\r\nhello\r\n6 ; q=\"a b\"\r\n world\r\n0\r\nTrailer-A: 1\r\nTrailer-B:two\r\n\r\n"
    static let getA = "GET /demo-free/hello/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8101\r\nUser-Agent: fuzz/1\r\nAccept: */*\r\n\r\n"
    static let postB = "POST /b HTTP/1.1\r\nHost: hello.demo-free.localhost\r\nContent-Length: 3\r\n\r\nabc"

    static let entries: [NamedInput] = [
        // Valid requests (RFC 9112 §2–§7).
        NamedInput("GET, HTTP/1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", .request(method: "GET", path: "/", host: "a", keepAlive: true)),
        NamedInput("GET with query and fields", getA, .request(path: "/demo-free/hello/a", query: "x=1", host: "127.0.0.1:8101")),
        NamedInput("HEAD", "HEAD /h HTTP/1.1\r\nHost: hello.acme.localhost\r\nConnection: close\r\n\r\n",
                   .request(method: "HEAD", keepAlive: false)),
        // §3.2: Host is required only in HTTP/1.1; HTTP/1.0 closes unless keep-alive.
        NamedInput("HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", .request(host: .some(nil), keepAlive: false)),
        NamedInput("HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n", .request(keepAlive: true)),
        NamedInput("POST with Content-Length", postB, .request(method: "POST", body: "abc")),
        NamedInput("POST with Content-Length 0", "POST /z HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", .request(body: "")),
        // §7.1: chunk extensions (BWS before ";" allowed) are ignored; trailers dropped.
        NamedInput("chunked with extensions and trailers",
                   "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody,
                   .request(body: "hello world")),
        NamedInput("chunked, empty body", "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", .request(body: "")),
        // §9.3.2: pipelining; the first request ends where the second starts.
        NamedInput("pipelined GET then POST", getA + postB, .request(path: "/demo-free/hello/a", consumed: getA.utf8.count)),
        // RFC 9110 §10.1.1: 100-continue, with and without the body sent.
        NamedInput("Expect 100-continue, body sent",
                   "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
                   .request(body: "ok", expectsContinue: true)),
        NamedInput("Expect 100-continue, body not yet sent",
                   "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n", .incomplete(headComplete: true)),
        // §3.2.2: the authority of an absolute-form target wins over Host.
        NamedInput("absolute-form target", "GET http://hello.acme.localhost:8101/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
                   .request(path: "/p", query: "q", host: "hello.acme.localhost:8101")),
        NamedInput("absolute-form, empty path", "GET HTTPS://h.example HTTP/1.1\r\nHost: x\r\n\r\n", .request(path: "/", host: "h.example")),
        // §5.1, RFC 9110 §5.6.3: OWS around a value is not part of it; HTAB counts.
        NamedInput("odd whitespace", "GET / HTTP/1.1\r\nHost:\th \t\r\nX-Empty:   \r\nX-Inner: a \t b\r\n\r\n", .request(host: "h")),
        // §2.2: empty lines before the request line are ignored; a bare LF MAY end a line
        // (bulkhead accepts it in the head, never in chunked framing).
        NamedInput("leading empty lines", "\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", .request(path: "/")),
        NamedInput("bare LF line ends", "GET / HTTP/1.1\nHost: h\n\n", .request(host: "h")),
        // RFC 9110 §8.6: the same Content-Length twice MAY be taken as one.
        NamedInput("duplicate equal Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
                   .request(body: "hi")),
        NamedInput("HTTP/1.2 read as 1.1", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", .request(keepAlive: true)),

        // Requests RFC 9112 says must be refused.
        NamedInput("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", .badRequest),  // §5.2: 400 (or unfold; bulkhead refuses)
        NamedInput("duplicate differing Content-Length",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", .badRequest),  // §6.3
        NamedInput("Content-Length with Transfer-Encoding",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest),  // §6.3
        NamedInput("Transfer-Encoding with Content-Length",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", .badRequest),
        NamedInput("Transfer-Encoding in HTTP/1.0",
                   "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest),  // §6.1
        // §6.3: in a request, a Transfer-Encoding whose final coding is not chunked leaves
        // the length unknowable: MUST 400. §6.1: a coding not understood (before a final
        // chunked): SHOULD 501.
        NamedInput("Transfer-Encoding without chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", .badRequest),
        NamedInput("chunked not last", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .badRequest),
        NamedInput("unknown coding before chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                   .refused([501])),
        NamedInput("whitespace before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", .badRequest),  // §5.1
        NamedInput("no Host in HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", .badRequest),  // §3.2
        NamedInput("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", .badRequest),  // §3.2
        NamedInput("bare CR in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", .badRequest),  // §2.2
        NamedInput("NUL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\u{0}b\r\n\r\n", .badRequest),  // RFC 9110 §5.5
        NamedInput("two spaces in the request line", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", .badRequest),  // §3
        NamedInput("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", .refused([505])),  // RFC 9110 §15.6.6
        NamedInput("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", .badRequest),  // §2.3: case-sensitive
        NamedInput("signed Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", .badRequest),  // §6.3
        NamedInput("Content-Length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", .refused([400])),  // RFC 9110 §8.6 MAY; refused here
        NamedInput("huge Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                   .refused([400, 413])),  // §7.1 "anticipate potentially large numerals"
        NamedInput("huge chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
                   .refused([400, 413])),
        NamedInput("chunk size line ended by a bare LF",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", .badRequest),  // §7.1: CRLF
        NamedInput("chunk data longer than its size",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", .badRequest),
        NamedInput("chunked, last chunk missing",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", .incomplete(headComplete: true)),
        NamedInput("userinfo in an absolute-form target", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", .badRequest),  // RFC 9110 §4.2.4
        NamedInput("fragment in the target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", .badRequest),  // §3.2: no fragment is sent
        NamedInput("head not finished", "GET / HTTP/1.1\r\nHost: h\r\n", .incomplete(headComplete: false)),
    ]
}
