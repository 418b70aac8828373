import HTTPWire
import Testing

@Suite("Incremental parsing")
struct IncrementalTests {
    /// Requests whose every split must parse as the whole does: valid ones, and ones
    /// refused for every kind of reason (the error must not depend on the split either).
    static let inputs: [String] = [
        request("GET /a?b=c HTTP/1.1", ["Host: example.com", "User-Agent: test/1.0", "Accept: */*"]),
        request("POST /p HTTP/1.1", ["Host: h", "Content-Length: 11"], body: "hello world") + "GET / HTTP/1.1\r\n",
        request("POST /p HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n"),
        request("POST /p HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked", "Expect: 100-continue"], body: "0\r\n\r\n"),
        "\r\n\r\nGET /lf HTTP/1.0\nConnection: keep-alive\n\n",
        request("GET http://h/x HTTP/1.1", ["Host: other"]),
        request("GET / HTTP/2.0", ["Host: h"]),
        request("GET / HTTP/1.1", ["Host: h", "X: a\rb"]),
        request("GET / HTTP/1.1", ["Host: h", " folded"]),
        request("GET / HTTP/1.1", ["Host: h", "Bad Name: x"]),
        request("GET / HTTP/1.1", ["X: y"]),
        request("POST / HTTP/1.1", ["Host: h", "Content-Length: 1", "Transfer-Encoding: chunked"]),
        request("POST / HTTP/1.1", ["Host: h", "Content-Length: 99999999"]),
        request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "5\r\nhelloX\r\n0\r\n\r\n"),
        request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "zz\r\n"),
        request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "FFFFFFFFFFFFFFFFFFFF\r\n"),
        "GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
        "G\u{0}T / HTTP/1.1\r\n\r\n",
    ]

    @Test("every split gives the whole's result", arguments: inputs)
    func everySplit(_ text: String) {
        let input = Array(text: text)
        var violations: [String] = []
        let whole = parseWhole(input, violations: &violations)
        #expect(!whole.isIncomplete)
        // One cut at each position, then two cuts at every pair of positions.
        for cut in 0...input.count {
            var incompletes: [Outcome] = []
            let split = parseFeeding(input, cuts: [cut], violations: &violations, allIncomplete: &incompletes)
            #expect(split == whole.ignoringContinueSignal, "cut at \(cut)")
        }
        for first in stride(from: 0, through: input.count, by: 3) {
            for second in stride(from: first, through: input.count, by: 5) {
                var incompletes: [Outcome] = []
                let split = parseFeeding(input, cuts: [first, second], violations: &violations, allIncomplete: &incompletes)
                #expect(split == whole.ignoringContinueSignal, "cuts at \(first), \(second)")
            }
        }
        let (byteAtATime, more) = parseByteAtATime(input)
        #expect(byteAtATime == whole.ignoringContinueSignal)
        #expect(violations.isEmpty && more.isEmpty, "\(violations) \(more)")
    }

    @Test("a large head sent a byte at a time is parsed (and not in quadratic time)")
    func slowloris() throws {
        // 150 fields of 100 bytes: ~15 KB, under the 16 KiB default.
        let lines = ["Host: h"] + (0..<150).map { "X-Field-\($0): " + String(repeating: "v", count: 84) }
        let text = request("GET /slow HTTP/1.1", lines)
        let limits = HTTPParserLimits(maxHeaderCount: 200)
        let (result, violations) = parseByteAtATime(Array(text: text), limits: limits)
        #expect(violations.isEmpty)
        let decoded = try #require(result.request)
        #expect(decoded.headers.count == 151)
        #expect(decoded.path == "/slow")
        // One line of 16 000 bytes, a byte at a time: refused only at the limit.
        let long = "GET /" + String(repeating: "a", count: 16_000)
        let (longResult, _) = parseByteAtATime(Array(text: long + " HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(longResult == .request(try #require(parseWhole(long + " HTTP/1.1\r\nHost: h\r\n\r\n").request)))
        let (tooLong, _) = parseByteAtATime(Array(text: "GET /" + String(repeating: "a", count: 17_000)))
        #expect(tooLong == .error(.headTooLarge))
    }

    @Test("a large chunked body sent a byte at a time is decoded")
    func chunkedByteAtATime() throws {
        let chunks = (1...40).map { String($0, radix: 16) + "\r\n" + String(repeating: "x", count: $0) + "\r\n" }.joined()
        let text = request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: chunks + "0\r\n\r\n")
        let (result, violations) = parseByteAtATime(Array(text: text))
        #expect(violations.isEmpty)
        let decoded = try #require(result.request)
        #expect(decoded.body.utf8.count == (1...40).reduce(0, +))
        #expect(decoded.consumed == text.utf8.count)
    }

    @Test("given fewer bytes than last time, the parser starts over instead of reading past the end")
    func shrinkingBuffer() throws {
        var parser = HTTPRequestParser()
        let input = Array(text: request("POST / HTTP/1.1", ["Host: h", "Transfer-Encoding: chunked"], body: "5\r\nhello\r\n0\r\n\r\n"))
        var results: [HTTPParseResult] = []
        input.withUnsafeBytes { all in
            results.append(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<(all.count - 3)])))
            results.append(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<10])))
            results.append(parser.parse(all))
        }
        #expect(results[0] == .incomplete(HTTPIncomplete(headComplete: true, expectsContinue: false, shouldSendContinue: false)))
        #expect(results[1] == .incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false)))
        guard case .request(let head) = results[2] else {
            Issue.record("not parsed: \(results[2])")
            return
        }
        #expect(head.body == .chunked(decodedLength: 5))
    }

    @Test("an empty buffer is incomplete")
    func empty() {
        var parser = HTTPRequestParser()
        let result = [UInt8]().withUnsafeBytes { parser.parse($0) }
        #expect(result == .incomplete(HTTPIncomplete(headComplete: false, expectsContinue: false, shouldSendContinue: false)))
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        #expect(parser.parse(none) == result)
    }
}
