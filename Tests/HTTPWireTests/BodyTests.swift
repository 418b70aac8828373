import HTTPWire
import Testing

@Suite("Bodies")
struct BodyTests {
    // MARK: Content-Length

    @Test("a Content-Length body is a range of the input; what follows is not consumed")
    func contentLength() throws {
        let text = request("POST /p HTTP/1.1", ["Host: h", "Content-Length: 5"], body: "hello") + "GET / HTTP/1.1\r\n"
        let decoded = try #require(parseWhole(text).request)
        #expect(decoded.body == "hello")
        #expect(decoded.contentLength == 5)
        #expect(!decoded.chunked)
        #expect(decoded.consumed == text.utf8.count - "GET / HTTP/1.1\r\n".utf8.count)
        #expect(decoded.consumed == decoded.headLength + 5)
    }

    @Test("no Content-Length and no Transfer-Encoding: no body")
    func noBody() throws {
        let text = request("POST / HTTP/1.1", ["Host: h"]) + "junk"
        let decoded = try #require(parseWhole(text).request)
        #expect(decoded.body == "")
        #expect(decoded.contentLength == nil)
        #expect(decoded.consumed == decoded.headLength)
    }

    @Test("Content-Length: 0 is an empty body")
    func zeroLength() throws {
        let decoded = try #require(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 0"])).request)
        #expect(decoded.body == "")
        #expect(decoded.contentLength == 0)
    }

    @Test("a partial body is incomplete with the head complete")
    func partialBody() {
        let result = parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 10"], body: "12345"))
        #expect(result == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: false, shouldSendContinue: false)))
    }

    static let contentLengths: [(String, HTTPParseError?)] = [
        ("5", nil),
        ("005", nil),
        (" 5 ", nil),
        ("5, 5", .invalidContentLength),
        ("+5", .invalidContentLength),
        ("-5", .invalidContentLength),
        ("0x5", .invalidContentLength),
        ("5a", .invalidContentLength),
        ("5 5", .invalidContentLength),
        ("", .invalidContentLength),
        ("٥", .invalidContentLength),
        ("99999999999999999999999999999999", .bodyTooLarge),
        ("9223372036854775807", .bodyTooLarge),
        ("1048577", .bodyTooLarge),
    ]

    @Test("Content-Length values", arguments: contentLengths)
    func contentLengthValue(_ value: String, _ error: HTTPParseError?) {
        let result = parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: \(value)"], body: "hello"))
        if let error {
            #expect(result == .error(error))
        } else {
            #expect(result.request?.body == "hello")
        }
    }

    @Test("repeated Content-Length: equal values pass, different ones are refused")
    func repeatedContentLength() {
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 5", "content-length: 5"], body: "hello")).request?.body == "hello")
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 5", "Content-Length: 6"], body: "hello!")) == .error(.conflictingContentLength))
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 5", "Content-Length: 05"], body: "hello")).request?.body == "hello")
    }

    // MARK: Smuggling and transfer codings

    static let framings: [([String], HTTPParseError)] = [
        (["Content-Length: 5", "Transfer-Encoding: chunked"], .contentLengthWithTransferEncoding),
        (["Transfer-Encoding: chunked", "Content-Length: 5"], .contentLengthWithTransferEncoding),
        (["Transfer-Encoding: chunked", "Content-Length: 0"], .contentLengthWithTransferEncoding),
        // RFC 9112 §6.3: chunked not the last coding of a request: 400. §6.1: a coding
        // not understood before a final chunked: 501. Several fields are one list.
        (["Transfer-Encoding: gzip"], .chunkedNotFinal),
        (["Transfer-Encoding: gzip, chunked"], .unsupportedTransferEncoding),
        (["Transfer-Encoding: gzip,chunked"], .unsupportedTransferEncoding),
        (["Transfer-Encoding: chunked, gzip"], .chunkedNotFinal),
        (["Transfer-Encoding: chunked, chunked"], .unsupportedTransferEncoding),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], .unsupportedTransferEncoding),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"], .chunkedNotFinal),
        (["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], .unsupportedTransferEncoding),
        (["Transfer-Encoding: gzip, chunked", "Transfer-Encoding: gzip"], .chunkedNotFinal),
        (["Transfer-Encoding: identity"], .chunkedNotFinal),
        (["Transfer-Encoding:"], .chunkedNotFinal),
        (["Transfer-Encoding: chunked,"], .chunkedNotFinal),
        (["Transfer-Encoding: xchunked"], .chunkedNotFinal),
        (["Transfer-Encoding: \u{1}chunked"], .invalidHeaderValue),
        (["Transfer-Encoding : chunked"], .whitespaceBeforeColon),
    ]

    @Test("framing that could be read two ways is refused", arguments: framings)
    func framing(_ lines: [String], _ error: HTTPParseError) {
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h"] + lines, body: "0\r\n\r\n")) == .error(error))
    }

    @Test("Transfer-Encoding is refused in HTTP/1.0")
    func transferEncodingHTTP10() {
        #expect(parseWhole(request("POST / HTTP/1.0", ["Transfer-Encoding: chunked"], body: "0\r\n\r\n")) == .error(.transferEncodingInHTTP10))
    }

    @Test("framing errors have the right status")
    func framingStatuses() {
        #expect(HTTPParseError.contentLengthWithTransferEncoding.status == 400)
        #expect(HTTPParseError.conflictingContentLength.status == 400)
        #expect(HTTPParseError.unsupportedTransferEncoding.status == 501)
        #expect(HTTPParseError.chunkedNotFinal.status == 400)
        #expect(HTTPParseError.bodyTooLarge.status == 413)
        #expect(HTTPParseError.invalidChunkSize.status == 400)
    }

    // MARK: Chunked

    static let chunked: [(String, String)] = [
        ("5\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
        ("0\r\n\r\n", ""),
        ("A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("a\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("0005\r\nhello\r\n000\r\n\r\n", "hello"),
        ("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello"),
        ("5 ;name=\"quoted\tvalue\"\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\t; x\r\nhello\r\n0\r\n\r\n", "hello"),
        ("2\r\n\r\n\r\n0\r\n\r\n", "\r\n"),
        ("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nChecksum: abc \r\n\r\n", "hello"),
        ("3\r\né!\r\n0\r\n\r\n", "é!"),
    ]

    @Test("chunked bodies are decoded; extensions and trailers dropped", arguments: chunked)
    func chunkedBody(_ encoded: String, _ body: String) throws {
        let text = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: encoded)
        let decoded = try #require(parseWhole(text + "NEXT").request)
        #expect(decoded.body == body)
        #expect(decoded.chunked)
        #expect(decoded.contentLength == nil)
        #expect(decoded.consumed == text.utf8.count)
        #expect(decoded.headers.count == 2)
    }

    static let badChunks: [(String, HTTPParseError)] = [
        ("g\r\n", .invalidChunkSize),
        ("\r\n", .invalidChunkSize),
        ("5 \r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        (" 5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("-5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("+5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("0x5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;\u{1}\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\r\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\nhello\r\n0\r\n\r\n", .invalidChunkFraming),
        ("5\r\nhelloX\r\n0\r\n\r\n", .invalidChunkFraming),
        ("5\r\nhello\n0\r\n\r\n", .invalidChunkFraming),
        ("5\r\nhello\rX0\r\n\r\n", .invalidChunkFraming),
        ("5\r\nhello\r\n0\n\r\n", .invalidChunkFraming),
        ("5\r\nhello\r\n0\r\n\n", .invalidChunkFraming),
        ("5\r\nhello\r\n0\r\nX: y\n\r\n", .invalidChunkFraming),
        ("5\r\nhello\r\n0\r\nno colon\r\n\r\n", .invalidTrailer),
        ("5\r\nhello\r\n0\r\n X: y\r\n\r\n", .invalidTrailer),
        ("5\r\nhello\r\n0\r\nX : y\r\n\r\n", .invalidTrailer),
        ("5\r\nhello\r\n0\r\nX: \u{0}\r\n\r\n", .invalidTrailer),
        // Sizes that do not fit in an Int, and one that fits but is over the limit.
        ("FFFFFFFFFFFFFFFFF\r\n", .invalidChunkSize),
        ("10000000000000000\r\n", .invalidChunkSize),
        ("8000000000000000\r\n", .invalidChunkSize),
        ("7FFFFFFFFFFFFFFF\r\n", .bodyTooLarge),
        ("100001\r\n", .bodyTooLarge),
        ("80000\r\n" + String(repeating: "x", count: 0x80000) + "\r\n80001\r\n", .bodyTooLarge),
    ]

    @Test("bad chunked framing is refused", arguments: badChunks)
    func badChunk(_ encoded: String, _ error: HTTPParseError) {
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: encoded)) == .error(error))
    }

    @Test("a chunked body that has not ended is incomplete")
    func chunkedIncomplete() {
        let incomplete = Outcome.incomplete(HTTPIncomplete(headComplete: true, expectsContinue: false, shouldSendContinue: false))
        for encoded in ["", "5", "5\r", "5\r\n", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n", "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\nX: y\r\n", "5\r\nhello\r\n0\r\n\r"] {
            #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: encoded)) == incomplete, "\(encoded.debugDescription)")
        }
    }

    @Test("chunk extensions past maxChunkLineBytes are refused")
    func longChunkLine() {
        let limits = HTTPParserLimits(maxChunkLineBytes: 64)
        let head = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"])
        // 64 bytes with CRLF: accepted.
        let fits = "5;" + String(repeating: "e", count: 60) + "\r\nhello\r\n0\r\n\r\n"
        #expect(parseWhole(head + fits, limits: limits).request?.body == "hello")
        let long = "5;" + String(repeating: "e", count: 61) + "\r\nhello\r\n0\r\n\r\n"
        #expect(parseWhole(head + long, limits: limits) == .error(.chunkLineTooLong))
        // Refused before its end arrives.
        #expect(parseWhole(head + "5;" + String(repeating: "e", count: 100), limits: limits) == .error(.chunkLineTooLong))
    }

    @Test("withBody hands out the body of each kind")
    func withBody() {
        var parser = HTTPRequestParser()
        let plain = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 3"], body: "abc"))
        plain.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            #expect(head.bodyLength == 3)
            #expect(parser.withBody(of: head, in: bytes) { Array($0) } == Array("abc".utf8))
        }
        let chunked = Array(text: request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"))
        chunked.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            #expect(head.body == .chunked(decodedLength: 3))
            #expect(parser.withBody(of: head, in: bytes) { Array($0) } == Array("abc".utf8))
        }
        let none = Array(text: request())
        none.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            #expect(head.body == .none)
            #expect(parser.withBody(of: head, in: bytes) { $0.count } == 0)
            // A head applied to a buffer too short for it reads nothing, not out of bounds.
            let empty: [UInt8] = []
            empty.withUnsafeBytes { other in
                #expect(parser.withBody(of: head, in: other) { $0.count } == 0)
            }
        }
    }
}
