import HTTPWire
import Testing

/// Every input a fuzzer of the parser has found, kept so it never comes back. Each has
/// the outcome RFC 9112 asks for, written from the RFC and not from what the code
/// answered; each also goes through every invariant of the fuzzers (whole, split, a byte
/// at a time, the reference reading, the round trip), under the default limits and
/// under tiny ones. The corpus fuzzer mutates these too.
///
/// To add one: paste the array literal a failing fuzz case prints, name what it is, and
/// write down what the RFC says the server must do with it.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    static let cases: [NamedInput] = [
        // MARK: Found by the first generated fuzzer (before the corpus fuzzer)

        // A CR at the very end of a prefix may be the start of CRLF: wait (§2.2).
        NamedInput("request line ending in a lone CR, more to come", "GET / HTTP/1.1\r", .incomplete(headComplete: false)),
        // The last byte is the CR of the empty line's CRLF: wait.
        NamedInput("head cut between CR and LF of the empty line", "GET / HTTP/1.1\r\nHost: h\r\n\r", .incomplete(headComplete: false)),
        // §2.2: a recipient MAY take a bare LF as a line end (bulkhead does, in the head).
        NamedInput("bare LF ends the request line", "GET / HTTP/1.1\nHost: h\r\n\n", .request(path: "/", host: "h")),
        // §2.2: a bare CR is invalid (or replaced with SP; bulkhead refuses).
        NamedInput("CR CR after the request line", "GET / HTTP/1.1\r\rHost: h\r\n\r\n", .badRequest),
        // §3.2.2: absolute-form; an empty path is "/" and the authority is the host.
        NamedInput("absolute-form with a query and no path", "GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n",
                   .request(path: "/", query: "x", host: "h")),
        NamedInput("one-byte chunk", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
                   .request(body: "x")),
        // §7.1: chunk-size = 1*HEXDIG, so an empty chunk-size line is malformed.
        NamedInput("empty chunk-size line", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", .badRequest),
        // §7.1.2, RFC 9110 §5.1: a trailer field-name is a token (one or more tchar).
        NamedInput("trailer without a name", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n: x\r\n\r\n",
                   .badRequest),
        // §6.3 and §7.1: a length too large to hold is refused (400, or 413 as too large).
        NamedInput("Content-Length overflowing 64 bits, before Host",
                   "POST / HTTP/1.1\r\nContent-Length: 184467440737095516160\r\nHost: h\r\n\r\n", .refused([400, 413])),
        // §2.2: empty lines before the request line are ignored; nothing else came yet.
        NamedInput("only line ends", "\r\n\r\n\r\n\n\n\r\n", .incomplete(headComplete: false)),
        NamedInput("a lone LF", "\n", .incomplete(headComplete: false)),
        NamedInput("a lone CR", "\r", .incomplete(headComplete: false)),
    ]

    @Test("each found input has the outcome RFC 9112 asks for", arguments: cases)
    func expected(_ input: NamedInput) {
        expectRFCOutcome(input)
    }

    @Test("each found input keeps every fuzz invariant, under default and tiny limits", arguments: cases)
    func invariants(_ input: NamedInput) {
        let tiny = HTTPParserLimits(maxHeadBytes: 20, maxHeaderCount: 1, maxBodyBytes: 1, maxChunkLineBytes: 3)
        for limits in [HTTPParserLimits(), tiny] {
            let problems = invariantProblems(input.bytes, limits: limits, byteAtATime: true, cuts: [input.bytes.count / 2])
            #expect(problems.isEmpty, "\(input.name) under \(limits): \(problems)")
        }
    }
}
