import HTTPWire
import Testing

@Suite("Limits")
struct LimitTests {
    /// A request whose head is exactly `size` bytes.
    static func head(ofSize size: Int) -> String {
        let base = request("GET / HTTP/1.1", ["Host: h", "X-Pad: "])
        let padding = max(size - base.utf8.count, 0)
        return request("GET / HTTP/1.1", ["Host: h", "X-Pad: " + String(repeating: "p", count: padding)])
    }

    @Test("a head of exactly maxHeadBytes passes; one byte more is 431, whole or split")
    func headSize() throws {
        let limits = HTTPParserLimits(maxHeadBytes: 1024)
        let exact = Self.head(ofSize: 1024)
        #expect(exact.utf8.count == 1024)
        #expect(parseWhole(exact, limits: limits).request?.headLength == 1024)
        let over = Self.head(ofSize: 1025)
        #expect(over.utf8.count == 1025)
        #expect(parseWhole(over, limits: limits) == .error(.headTooLarge))
        #expect(parseByteAtATime(Array(text: over), limits: limits).0 == .error(.headTooLarge))
        #expect(HTTPParseError.headTooLarge.status == 431)
        // The default is 16 KiB.
        #expect(parseWhole(Self.head(ofSize: 16 * 1024)).request != nil)
        #expect(parseWhole(Self.head(ofSize: 16 * 1024 + 1)) == .error(.headTooLarge))
    }

    @Test("a head that never ends is refused once it passes the limit, without waiting for more")
    func endlessHead() {
        let limits = HTTPParserLimits(maxHeadBytes: 100)
        #expect(parseWhole("GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "y", count: 71), limits: limits).isIncomplete)
        #expect(parseWhole("GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "y", count: 72), limits: limits) == .error(.headTooLarge))
        #expect(parseWhole(String(repeating: "\r\n", count: 50), limits: limits) == .error(.headTooLarge))
        #expect(parseWhole(String(repeating: "\r\n", count: 49), limits: limits).isIncomplete)
    }

    @Test("a bad line before the limit is a 400, a line that crosses it a 431")
    func errorVersusLimit() {
        let limits = HTTPParserLimits(maxHeadBytes: 64)
        #expect(parseWhole("GET / HTTP/1.1\r\nBad Name: x\r\n" + String(repeating: "z", count: 100), limits: limits) == .error(.invalidHeaderName))
        #expect(parseWhole("GET / HTTP/1.1\r\nBad Name: x" + String(repeating: "z", count: 100) + "\r\n", limits: limits) == .error(.headTooLarge))
    }

    @Test("maxHeaderCount fields pass; one more is 431")
    func headerCount() {
        let hundred = ["Host: h"] + (1..<100).map { "X-\($0): v" }
        #expect(parseWhole(request("GET / HTTP/1.1", hundred)).request?.headers.count == 100)
        #expect(parseWhole(request("GET / HTTP/1.1", hundred + ["X-101: v"])) == .error(.tooManyHeaders))
        #expect(HTTPParseError.tooManyHeaders.status == 431)
        let limits = HTTPParserLimits(maxHeaderCount: 2)
        #expect(parseWhole(request("GET / HTTP/1.1", ["Host: h", "A: 1"]), limits: limits).request != nil)
        #expect(parseWhole(request("GET / HTTP/1.1", ["Host: h", "A: 1", "B: 2"]), limits: limits) == .error(.tooManyHeaders))
    }

    @Test("a Content-Length over maxBodyBytes is 413 before any body byte arrives")
    func bodyLimit() {
        let limits = HTTPParserLimits(maxBodyBytes: 10)
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 10"], body: "0123456789"), limits: limits).request?.body == "0123456789")
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 11"]), limits: limits) == .error(.bodyTooLarge))
        // The limit is per parser, so per pool: change it between requests.
        var parser = HTTPRequestParser(limits: limits)
        parser.limits.maxBodyBytes = 20
        let input = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 11"], body: "01234567890"))
        input.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            #expect(head.bodyLength == 11)
        }
    }

    @Test("headInProgress gives the head while the body arrives; a limit lowered then holds the chunks that follow")
    func headInProgress() {
        var parser = HTTPRequestParser(limits: HTTPParserLimits(maxBodyBytes: 100))
        let lengthHead = Array(text: request("POST /c/s/x HTTP/1.1", ["Host: h", "Content-Length: 50"]))
        lengthHead.withUnsafeBytes { bytes in
            #expect(parser.headInProgress == nil, "no head before parsing")
            guard case .incomplete(let state) = parser.parse(bytes), state.headComplete, let head = parser.headInProgress else {
                Issue.record("the head is not in progress")
                return
            }
            #expect(head.contentLength == 50)
            #expect(head.bodyLength == 50)
            #expect(head.headLength == bytes.count)
            #expect(String(decoding: bytes[head.path], as: UTF8.self) == "/c/s/x")
        }
        // A chunked body: 30 bytes decoded, then the limit drops to 40; the next chunk
        // of 20 crosses it and is refused at its size line.
        parser = HTTPRequestParser(limits: HTTPParserLimits(maxBodyBytes: 100))
        var input = Array(text: request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"]) + "1e\r\n" + String(repeating: "a", count: 30) + "\r\n")
        input.withUnsafeBytes { bytes in
            guard case .incomplete = parser.parse(bytes) else {
                Issue.record("not incomplete")
                return
            }
        }
        #expect(parser.headInProgress?.bodyLength == 30, "the chunked bytes decoded so far")
        parser.limits.maxBodyBytes = 40
        input += Array(text: "14\r\n")
        input.withUnsafeBytes { bytes in
            #expect(parser.parse(bytes) == .error(.bodyTooLarge))
        }
        #expect(parser.headInProgress == nil, "no head after a refusal")
    }

    @Test("stopsAfterHead: the call that completes a head with a body returns before the body, whatever is there")
    func stopsAfterHead() {
        var parser = HTTPRequestParser(limits: HTTPParserLimits(maxBodyBytes: 100))
        parser.stopsAfterHead = true
        // Head and a chunk size under the old limit in one buffer: the size is judged
        // only after the caller lowered the limit.
        let chunked = Array(text: request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"]) + "50\r\n")
        chunked.withUnsafeBytes { bytes in
            #expect(parser.parse(bytes) == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: false, shouldSendContinue: false)))
            parser.limits.maxBodyBytes = 10
            #expect(parser.parse(bytes) == .error(.bodyTooLarge))
        }
        // A whole request: the stop, then the request on the next call; 100 Continue
        // is still signalled once, by the call that waits for the body.
        let whole = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 3"], body: "abc"))
        parser.reset()
        parser.limits.maxBodyBytes = 100
        whole.withUnsafeBytes { bytes in
            guard case .incomplete(let state) = parser.parse(bytes), state.headComplete else {
                Issue.record("no stop after the head")
                return
            }
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("no request on the call after the stop")
                return
            }
            #expect(head.bodyLength == 3)
        }
        let expecting = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 3", "Expect: 100-continue"]))
        parser.reset()
        expecting.withUnsafeBytes { bytes in
            #expect(parser.parse(bytes) == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: false)))
            #expect(parser.parse(bytes) == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: true)))
        }
        // No body, no stop.
        for text in [request("GET / HTTP/1.1", ["Host: h"]), request("POST / HTTP/1.1", ["Host: h", "Content-Length: 0"])] {
            parser.reset()
            Array(text: text).withUnsafeBytes { bytes in
                guard case .request = parser.parse(bytes) else {
                    Issue.record("stopped after a head without a body: \(text)")
                    return
                }
            }
        }
    }

    @Test("a chunked body over maxBodyBytes is 413 at the chunk size that crosses it")
    func chunkedBodyLimit() {
        let limits = HTTPParserLimits(maxBodyBytes: 10)
        let head = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"])
        #expect(parseWhole(head + "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", limits: limits).request?.body == "0123456789")
        #expect(parseWhole(head + "5\r\n01234\r\n6\r\n", limits: limits) == .error(.bodyTooLarge))
        #expect(parseWhole(head + "b\r\n", limits: limits) == .error(.bodyTooLarge))
    }

    @Test("trailers over maxHeadBytes are 431")
    func trailerLimit() {
        let limits = HTTPParserLimits(maxHeadBytes: 200)
        let head = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"])
        #expect(parseWhole(head + "0\r\nT: " + String(repeating: "t", count: 150) + "\r\n\r\n", limits: limits).request != nil)
        #expect(parseWhole(head + "0\r\nT: " + String(repeating: "t", count: 300) + "\r\n\r\n", limits: limits) == .error(.trailersTooLarge))
    }

    @Test("zero and negative limits refuse instead of trapping")
    func degenerateLimits() {
        let zero = HTTPParserLimits(maxHeadBytes: 0, maxHeaderCount: 0, maxBodyBytes: 0, maxChunkLineBytes: 0)
        #expect(parseWhole(request(), limits: zero) == .error(.headTooLarge))
        let negative = HTTPParserLimits(maxHeadBytes: -1, maxHeaderCount: -1, maxBodyBytes: -1, maxChunkLineBytes: -1)
        #expect(parseWhole(request(), limits: negative) == .error(.headTooLarge))
        let noHeaders = HTTPParserLimits(maxHeaderCount: -5, maxBodyBytes: -5, maxChunkLineBytes: -5)
        #expect(parseWhole(request(), limits: noHeaders) == .error(.tooManyHeaders))
        #expect(parseWhole(request("GET / HTTP/1.0", []), limits: noHeaders).request != nil)
        #expect(parseWhole(request("POST / HTTP/1.0", ["Content-Length: 1"], body: "x"), limits: HTTPParserLimits(maxHeaderCount: 5, maxBodyBytes: -5)) == .error(.bodyTooLarge))
        let chunked = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "0\r\n\r\n")
        #expect(parseWhole(chunked, limits: HTTPParserLimits(maxChunkLineBytes: -5)) == .error(.chunkLineTooLong))
        let huge = HTTPParserLimits(maxHeadBytes: .max, maxHeaderCount: .max, maxBodyBytes: .max, maxChunkLineBytes: .max)
        #expect(parseWhole(chunked, limits: huge).request?.chunked == true)
        // A body that could never fit after the head.
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 9223372036854775807"]), limits: huge) == .error(.bodyTooLarge))
    }
}
