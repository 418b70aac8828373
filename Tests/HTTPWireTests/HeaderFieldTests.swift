import HTTPWire
import Testing

@Suite("Header fields")
struct HeaderFieldTests {
    static let accepted: [(String, [String])] = [
        ("X-A:b", ["X-A", "b"]),
        ("X-A: b", ["X-A", "b"]),
        ("X-A:   spaced  value \t ", ["X-A", "spaced  value"]),
        ("X-A:\t\tb", ["X-A", "b"]),
        ("X-Empty:", ["X-Empty", ""]),
        ("X-Empty:   ", ["X-Empty", ""]),
        ("X-Tab: a\tb", ["X-Tab", "a\tb"]),
        ("X-Colon: a:b: c", ["X-Colon", "a:b: c"]),
        ("X-Utf8: héllo ✓", ["X-Utf8", "héllo ✓"]),
        ("!#$%&'*+-.^_`|~09azAZ: v", ["!#$%&'*+-.^_`|~09azAZ", "v"]),
    ]

    @Test("accepted fields, value trimmed of OWS", arguments: accepted)
    func acceptedField(_ line: String, _ field: [String]) throws {
        let decoded = try #require(parseWhole(request("GET / HTTP/1.1", ["Host: h", line])).request)
        #expect(decoded.headers == [["Host", "h"], field])
    }

    static let refused: [(String, HTTPParseError)] = [
        (" X: y", .obsoleteLineFolding),
        ("\tX: y", .obsoleteLineFolding),
        ("X : y", .whitespaceBeforeColon),
        ("X\t: y", .whitespaceBeforeColon),
        ("X  \t : y", .whitespaceBeforeColon),
        ("X y: z", .invalidHeaderName),
        ("X(y): z", .invalidHeaderName),
        ("X/y: z", .invalidHeaderName),
        (": z", .invalidHeaderName),
        ("é: z", .invalidHeaderName),
        ("X", .missingColon),
        ("X-Only-Name", .missingColon),
        ("X: a\u{1}b", .invalidHeaderValue),
        ("X: a\u{0}", .invalidHeaderValue),
        ("X: a\u{7F}", .invalidHeaderValue),
        ("X: \u{1B}[31m", .invalidHeaderValue),
        ("X: a\u{0B}b", .invalidHeaderValue),
        ("X: a\rb", .bareCarriageReturn),
        ("X\r: a", .bareCarriageReturn),
        ("Host: other", .duplicateHost),
        ("host:h", .duplicateHost),
    ]

    @Test("refused fields", arguments: refused)
    func refusedField(_ line: String, _ error: HTTPParseError) {
        #expect(parseWhole(request("GET / HTTP/1.1", ["Host: h", line])) == .error(error))
    }

    @Test("obsolete line folding after a field is refused")
    func folding() {
        #expect(parseWhole(request("GET / HTTP/1.1", ["Host: h", "X: a", "  continued"])) == .error(.obsoleteLineFolding))
        #expect(parseWhole(request("GET / HTTP/1.1", ["Host: h", "X: a", "\tcontinued"])) == .error(.obsoleteLineFolding))
    }

    @Test("fields keep their order, duplicates included")
    func order() throws {
        let decoded = try #require(parseWhole(request("GET / HTTP/1.1", [
            "Accept: a", "host: h", "Cookie: 1", "cookie: 2", "ACCEPT: b",
        ])).request)
        #expect(decoded.headers == [["Accept", "a"], ["host", "h"], ["Cookie", "1"], ["cookie", "2"], ["ACCEPT", "b"]])
        #expect(decoded.host == "h")
    }

    @Test("lookup by name is case-insensitive and finds the first")
    func lookup() throws {
        let input = Array(text: request("GET / HTTP/1.1", ["Host: h", "X-Request-Id: first", "x-request-id: second", "X_Under: u"]))
        var parser = HTTPRequestParser()
        input.withUnsafeBytes { bytes in
            guard case .request = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            let value = parser.firstValue(forHeader: "x-request-id", in: bytes)
            #expect(value.map { string(bytes, $0) } == "first")
            #expect(parser.firstValue(forHeader: "x-absent", in: bytes) == nil)
            #expect(parser.firstValue(forHeader: "X-REQUEST-ID", in: bytes).map { string(bytes, $0) } == "first")
            #expect(parser.firstValue(forHeader: "x_under", in: bytes).map { string(bytes, $0) } == "u")
            #expect(parser.headerFields.count == 4)
            #expect(string(bytes, parser.headerFields[1].name) == "X-Request-Id")
        }
    }

    // MARK: Host

    @Test("Host is required in HTTP/1.1, optional in HTTP/1.0")
    func hostRequired() throws {
        #expect(parseWhole(request("GET / HTTP/1.1", ["X: y"])) == .error(.missingHost))
        #expect(parseWhole(request("GET / HTTP/1.1", [])) == .error(.missingHost))
        // Even with an absolute-form target (RFC 9112 §3.2).
        #expect(parseWhole(request("GET http://h/ HTTP/1.1", [])) == .error(.missingHost))
        let old = try #require(parseWhole(request("GET / HTTP/1.0", [])).request)
        #expect(old.host == nil)
    }

    static let hosts: [(String, String?)] = [
        ("example.com", "example.com"),
        ("Example.COM:8101", "Example.COM:8101"),
        ("127.0.0.1:8101", "127.0.0.1:8101"),
        ("[::1]:8101", "[::1]:8101"),
        ("hello.acme.localhost", "hello.acme.localhost"),
        ("", ""),
        ("a b", nil),
        ("user@h", nil),
        ("h/x", nil),
        ("h\"", nil),
        ("hé", nil),
    ]

    @Test("Host values", arguments: hosts)
    func hostValue(_ value: String, _ expected: String?) {
        let result = parseWhole(request("GET / HTTP/1.1", ["Host: \(value)"]))
        if let expected {
            #expect(result.request?.host == expected)
        } else {
            #expect(result == .error(.invalidHost))
        }
    }

    @Test("an absolute-form authority takes precedence over Host")
    func absoluteFormHost() throws {
        let decoded = try #require(parseWhole(request("GET http://a.b.c/x HTTP/1.1", ["Host: other"])).request)
        #expect(decoded.host == "a.b.c")
        #expect(decoded.path == "/x")
    }

    @Test("special field names are matched case-insensitively")
    func caseInsensitiveNames() throws {
        let decoded = try #require(parseWhole(request("POST / HTTP/1.1", [
            "HOST: h", "CONTENT-LENGTH: 2", "CONNECTION: CLOSE",
        ], body: "ok")).request)
        #expect(decoded.host == "h")
        #expect(decoded.body == "ok")
        #expect(!decoded.keepAlive)
    }
}
