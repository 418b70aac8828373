import Testing
@testable import LoadClient

/// The response parser on its own: framing, split input, and the malformed
/// responses it must refuse.
@Suite("HTTPResponseParser")
struct HTTPResponseParserTests {
    /// Feeds `text` in pieces of `pieceSize` bytes and returns the last step.
    private func parse(_ text: String, pieceSize: Int = .max, head: Bool = false) -> HTTPResponseParser.Step {
        var parser = HTTPResponseParser(requestWasHead: head)
        let bytes = Array(text.utf8)
        var step = HTTPResponseParser.Step.needMore
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + min(pieceSize, bytes.count))
            step = parser.feed(bytes[start..<end])
            start = end
            if case .needMore = step { continue }
            break
        }
        return step
    }

    private func response(_ step: HTTPResponseParser.Step, sourceLocation: SourceLocation = #_sourceLocation) -> HTTPResponse? {
        guard case .complete(let response, let excess) = step else {
            Issue.record("expected a complete response, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(excess == 0, sourceLocation: sourceLocation)
        return response
    }

    @Test("Content-Length body, fed whole and byte by byte")
    func contentLength() throws {
        let text = "HTTP/1.1 200 OK\r\nX-Bulkhead-Pool: free\r\nContent-Length: 5\r\n\r\nhello"
        for pieceSize in [Int.max, 1, 7] {
            let parsed = try #require(response(parse(text, pieceSize: pieceSize)))
            #expect(parsed.status == 200)
            #expect(parsed.body == Array("hello".utf8))
            #expect(parsed.header("x-bulkhead-pool") == "free")
            #expect(parsed.keepAlive)
        }
    }

    @Test("chunked body with extensions and trailers, split anywhere")
    func chunked() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nbulk\r\nA\r\nhead-load!\r\n0\r\nX-Trailer: t\r\n\r\n"
        for pieceSize in [Int.max, 1, 3] {
            let parsed = try #require(response(parse(text, pieceSize: pieceSize)))
            #expect(String(decoding: parsed.body, as: UTF8.self) == "bulkhead-load!")
        }
    }

    @Test("HEAD, 204 and 304 have no body whatever Content-Length says")
    func noBody() throws {
        let head = try #require(response(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head: true)))
        #expect(head.body.isEmpty)
        let noContent = try #require(response(parse("HTTP/1.1 204 No Content\r\n\r\n")))
        #expect(noContent.status == 204)
        #expect(try #require(response(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"))).body.isEmpty)
    }

    @Test("interim 100 Continue is skipped")
    func interim() throws {
        let parsed = try #require(response(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")))
        #expect(parsed.status == 201)
    }

    @Test("keep-alive follows the version and Connection")
    func keepAlive() throws {
        #expect(try #require(response(parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))).keepAlive == false)
        #expect(try #require(response(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))).keepAlive == false)
        #expect(try #require(response(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"))).keepAlive)
    }

    @Test("a body delimited by close is complete at end of stream; a cut one is not")
    func endOfStream() {
        var untilClose = HTTPResponseParser()
        #expect(untilClose.feed(Array("HTTP/1.1 200 OK\r\n\r\npartial".utf8)) == .needMore)
        let parsed = untilClose.endOfStream()
        #expect(parsed?.body == Array("partial".utf8))
        #expect(parsed?.keepAlive == false)

        var cut = HTTPResponseParser()
        #expect(cut.feed(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8)) == .needMore)
        #expect(cut.endOfStream() == nil)
        #expect(HTTPResponseParser().isEmpty)
    }

    @Test("bytes after the response are reported as excess")
    func excess() {
        let step = parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        guard case .complete(_, let excess) = step else {
            Issue.record("expected complete, got \(step)")
            return
        }
        #expect(excess == 17)
    }

    @Test("malformed responses are invalid", arguments: [
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ])
    func invalid(_ text: String) {
        guard case .invalid = parse(text) else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
    }

    @Test("an endless header section is refused at the limit")
    func headLimit() {
        var parser = HTTPResponseParser()
        var step = parser.feed(Array("HTTP/1.1 200 OK\r\n".utf8))
        let filler = Array("X-Filler: \(String(repeating: "a", count: 1000))\r\n".utf8)
        for _ in 0..<100 {
            step = parser.feed(filler)
            if case .invalid = step { break }
        }
        guard case .invalid = step else {
            Issue.record("accepted a header section over the limit")
            return
        }
    }
}
