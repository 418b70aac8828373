import HTTPWire
import Testing

@Suite("Keep-alive, 100-continue and pipelining")
struct ConnectionTests {
    static let keepAlive: [(String, [String], Bool)] = [
        ("HTTP/1.1", [], true),
        ("HTTP/1.1", ["Connection: close"], false),
        ("HTTP/1.1", ["Connection: Close"], false),
        ("HTTP/1.1", ["Connection: keep-alive"], true),
        ("HTTP/1.1", ["Connection: Keep-Alive, Close"], false),
        ("HTTP/1.1", ["Connection: upgrade,close"], false),
        ("HTTP/1.1", ["Connection: upgrade", "Connection:  close "], false),
        ("HTTP/1.1", ["Connection: closed"], true),
        ("HTTP/1.1", ["Connection: "], true),
        ("HTTP/1.1", ["X-Connection: close"], true),
        ("HTTP/1.0", [], false),
        ("HTTP/1.0", ["Connection: keep-alive"], true),
        ("HTTP/1.0", ["Connection: KEEP-ALIVE"], true),
        ("HTTP/1.0", ["Connection: foo, keep-alive"], true),
        ("HTTP/1.0", ["Connection: keep-alive, close"], false),
        ("HTTP/1.0", ["Connection: close", "Connection: keep-alive"], false),
        ("HTTP/1.0", ["Connection: keep-alivex"], false),
        ("HTTP/1.0", ["Keep-Alive: timeout=5"], false),
    ]

    @Test("keep-alive decision", arguments: keepAlive)
    func keepAliveDecision(_ version: String, _ lines: [String], _ expected: Bool) throws {
        let decoded = try #require(parseWhole(request("GET / \(version)", ["Host: h"] + lines)).request)
        #expect(decoded.keepAlive == expected)
    }

    // MARK: 100-continue

    @Test("Expect: 100-continue asks for 100 Continue exactly once, when the head is complete")
    func expectContinue() throws {
        let input = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 5", "Expect: 100-continue"], body: "hello"))
        let headLength = input.count - 5
        var parser = HTTPRequestParser()
        var results: [HTTPParseResult] = []
        input.withUnsafeBytes { all in
            for cut in [headLength - 1, headLength, headLength + 2, headLength + 4, input.count] {
                results.append(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<cut])))
            }
        }
        #expect(results[0] == .incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false)))
        #expect(results[1] == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: true)))
        #expect(results[2] == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: false)))
        #expect(results[3] == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: false)))
        guard case .request(let head) = results[4] else {
            Issue.record("no request: \(results[4])")
            return
        }
        #expect(head.expectsContinue)
        #expect(head.bodyLength == 5)
    }

    @Test("Expect: 100-continue with the body already there needs no 100")
    func expectContinueBodyPresent() throws {
        let decoded = try #require(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 2", "Expect: 100-Continue"], body: "ok")).request)
        #expect(decoded.expectsContinue)
        #expect(decoded.body == "ok")
    }

    @Test("Expect: 100-continue with a chunked body")
    func expectContinueChunked() {
        let result = parseWhole(request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked", "Expect: 100-continue"]))
        #expect(result == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: true, shouldSendContinue: true)))
    }

    @Test("a body over the limit is refused before 100 Continue is sent")
    func expectContinueTooLarge() {
        let limits = HTTPParserLimits(maxBodyBytes: 100)
        let result = parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 101", "Expect: 100-continue"]), limits: limits)
        #expect(result == .error(.bodyTooLarge))
    }

    @Test("100-continue is ignored in HTTP/1.0 and for other expectations")
    func expectIgnored() {
        let notAsked = Outcome.incomplete(HTTPIncomplete(headComplete: true, expectsContinue: false, shouldSendContinue: false))
        #expect(parseWhole(request("POST / HTTP/1.0", ["Content-Length: 5", "Expect: 100-continue"])) == notAsked)
        #expect(parseWhole(request("POST / HTTP/1.1", ["Host: h", "Content-Length: 5", "Expect: something-else"])) == notAsked)
    }

    @Test("100-continue is signalled again for the next request on the connection")
    func expectContinueTwice() {
        var parser = HTTPRequestParser()
        let first = Array(text: request("POST / HTTP/1.1", ["Host: h", "Content-Length: 1", "Expect: 100-continue"]))
        for _ in 0..<2 {
            first.withUnsafeBytes { bytes in
                guard case .incomplete(let state) = parser.parse(bytes) else {
                    Issue.record("expected incomplete")
                    return
                }
                #expect(state.shouldSendContinue)
            }
            (first + [UInt8(ascii: "x")]).withUnsafeBytes { bytes in
                guard case .request = parser.parse(bytes) else {
                    Issue.record("expected a request")
                    return
                }
            }
        }
    }

    // MARK: Pipelining

    @Test("pipelined requests in one buffer parse one after another")
    func pipelined() throws {
        let requests = [
            request("GET /one HTTP/1.1", ["Host: h"]),
            request("POST /two HTTP/1.1", ["Host: h", "Content-Length: 3"], body: "abc"),
            request("POST /three HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "3\r\nxyz\r\n0\r\n\r\n"),
            "\r\n" + request("GET /four?q HTTP/1.1", ["Host: h", "Connection: close"]),
        ]
        let outcomes = parsePipelined(Array(text: requests.joined() + "GET /fi"))
        #expect(outcomes.count == 5)
        let decoded = outcomes.compactMap(\.request)
        #expect(decoded.map(\.path) == ["/one", "/two", "/three", "/four"])
        #expect(decoded.map(\.body) == ["", "abc", "xyz", ""])
        #expect(decoded.map(\.consumed) == requests.map(\.utf8.count))
        #expect(decoded.map(\.keepAlive) == [true, true, true, false])
        #expect(outcomes.last?.isIncomplete == true)
    }

    @Test("the parser's storage is reused: fields of one request do not leak into the next")
    func reuse() throws {
        var parser = HTTPRequestParser()
        let big = Array(text: request("GET / HTTP/1.1", ["Host: h"] + (0..<20).map { "X-\($0): \($0)" }))
        let small = Array(text: request("GET / HTTP/1.1", ["Host: h2"]))
        big.withUnsafeBytes { bytes in
            _ = parser.parse(bytes)
            #expect(parser.headerFields.count == 21)
        }
        small.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            #expect(head.headerCount == 1)
            #expect(parser.headerFields.count == 1)
            #expect(head.host.map { string(bytes, $0) } == "h2")
        }
    }

    @Test("after an error the parser starts a new request")
    func afterError() {
        var parser = HTTPRequestParser()
        let bad = Array(text: "BAD\r\n\r\n")
        let good = Array(text: request())
        bad.withUnsafeBytes { #expect(parser.parse($0) == .error(.invalidRequestLine)) }
        good.withUnsafeBytes { bytes in
            guard case .request = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
        }
    }

    @Test("hasPartialRequest tells a slow client from an idle connection")
    func partial() {
        var parser = HTTPRequestParser()
        #expect(!parser.hasPartialRequest)
        let input = Array(text: request())
        input.withUnsafeBytes { all in
            _ = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<5]))
            #expect(parser.hasPartialRequest)
            _ = parser.parse(all)
            #expect(!parser.hasPartialRequest)
        }
        input.withUnsafeBytes { all in
            _ = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<5]))
            parser.reset()
            #expect(!parser.hasPartialRequest)
        }
    }
}
