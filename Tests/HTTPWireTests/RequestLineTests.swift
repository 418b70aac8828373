import HTTPWire
import Testing

@Suite("Request line")
struct RequestLineTests {
    struct Accepted: Sendable, CustomTestStringConvertible {
        var line: String
        var method: String
        var knownMethod: HTTPMethod
        var path: String
        var query: String
        var version: HTTPVersion
        var host = "example"
        var testDescription: String { line }
    }

    static let accepted: [Accepted] = [
        Accepted(line: "GET / HTTP/1.1", method: "GET", knownMethod: .get, path: "/", query: "", version: .http1_1),
        Accepted(line: "GET /a/b?x=1&y HTTP/1.1", method: "GET", knownMethod: .get, path: "/a/b", query: "x=1&y", version: .http1_1),
        Accepted(line: "GET /a? HTTP/1.1", method: "GET", knownMethod: .get, path: "/a", query: "", version: .http1_1),
        Accepted(line: "GET /a?b?c=/d HTTP/1.1", method: "GET", knownMethod: .get, path: "/a", query: "b?c=/d", version: .http1_1),
        Accepted(line: "GET /%20a%2F//b/ HTTP/1.1", method: "GET", knownMethod: .get, path: "/%20a%2F//b/", query: "", version: .http1_1),
        Accepted(line: "GET /{|}^` HTTP/1.1", method: "GET", knownMethod: .get, path: "/{|}^`", query: "", version: .http1_1),
        Accepted(line: "POST /x HTTP/1.0", method: "POST", knownMethod: .post, path: "/x", query: "", version: .http1_0),
        Accepted(line: "HEAD / HTTP/1.1", method: "HEAD", knownMethod: .head, path: "/", query: "", version: .http1_1),
        Accepted(line: "PUT / HTTP/1.1", method: "PUT", knownMethod: .put, path: "/", query: "", version: .http1_1),
        Accepted(line: "DELETE / HTTP/1.1", method: "DELETE", knownMethod: .delete, path: "/", query: "", version: .http1_1),
        Accepted(line: "OPTIONS /o HTTP/1.1", method: "OPTIONS", knownMethod: .options, path: "/o", query: "", version: .http1_1),
        Accepted(line: "PATCH / HTTP/1.1", method: "PATCH", knownMethod: .patch, path: "/", query: "", version: .http1_1),
        Accepted(line: "TRACE / HTTP/1.1", method: "TRACE", knownMethod: .trace, path: "/", query: "", version: .http1_1),
        // Methods are case-sensitive tokens: valid, but not GET.
        Accepted(line: "get / HTTP/1.1", method: "get", knownMethod: .other, path: "/", query: "", version: .http1_1),
        Accepted(line: "M-SEARCH / HTTP/1.1", method: "M-SEARCH", knownMethod: .other, path: "/", query: "", version: .http1_1),
        Accepted(line: "GETS / HTTP/1.1", method: "GETS", knownMethod: .other, path: "/", query: "", version: .http1_1),
        // A later 1.x minor version is read as 1.1 (RFC 9110 §6.2).
        Accepted(line: "GET / HTTP/1.2", method: "GET", knownMethod: .get, path: "/", query: "", version: .http1_1),
        Accepted(line: "GET / HTTP/1.9", method: "GET", knownMethod: .get, path: "/", query: "", version: .http1_1),
        // Absolute-form: reduced to path and query; the authority becomes the host.
        Accepted(line: "GET http://Api.Shop.example:8101/p/q?r=1 HTTP/1.1", method: "GET", knownMethod: .get, path: "/p/q", query: "r=1", version: .http1_1, host: "Api.Shop.example:8101"),
        Accepted(line: "GET HTTPS://h/ HTTP/1.1", method: "GET", knownMethod: .get, path: "/", query: "", version: .http1_1, host: "h"),
        Accepted(line: "GET http://h HTTP/1.1", method: "GET", knownMethod: .get, path: "/", query: "", version: .http1_1, host: "h"),
        Accepted(line: "GET http://h?x=y HTTP/1.1", method: "GET", knownMethod: .get, path: "/", query: "x=y", version: .http1_1, host: "h"),
        Accepted(line: "GET http://[::1]:8101/a HTTP/1.1", method: "GET", knownMethod: .get, path: "/a", query: "", version: .http1_1, host: "[::1]:8101"),
    ]

    @Test("accepted request lines", arguments: accepted)
    func acceptedLine(_ case_: Accepted) throws {
        let result = parseWhole(request(case_.line, ["Host: example"]))
        let decoded = try #require(result.request, "\(result)")
        #expect(decoded.method == case_.method)
        #expect(decoded.knownMethod == case_.knownMethod)
        #expect(decoded.path == case_.path)
        #expect(decoded.query == case_.query)
        #expect(decoded.version == case_.version)
        #expect(decoded.host == case_.host)
        #expect(decoded.target == String(case_.line.split(separator: " ")[1]))
    }

    static let refused: [(String, HTTPParseError)] = [
        ("GET  / HTTP/1.1", .invalidRequestLine),
        (" GET / HTTP/1.1", .invalidRequestLine),
        ("GET /", .invalidRequestLine),
        ("GET", .invalidRequestLine),
        ("GET / ", .invalidVersion),
        ("GET / HTTP/1.1 ", .invalidVersion),
        ("GET /  HTTP/1.1", .invalidRequestLine),
        ("G@T / HTTP/1.1", .invalidMethod),
        ("GET\t/ HTTP/1.1", .invalidMethod),
        ("GE(T / HTTP/1.1", .invalidMethod),
        ("\u{1}GET / HTTP/1.1", .invalidMethod),
        ("GET / HTTP/2.0", .unsupportedVersion),
        ("GET / HTTP/3.0", .unsupportedVersion),
        ("GET / HTTP/0.9", .unsupportedVersion),
        ("PRI * HTTP/2.0", .unsupportedVersion),
        ("GET / http/1.1", .invalidVersion),
        ("GET / HTTP/1", .invalidVersion),
        ("GET / HTTP/1.10", .invalidVersion),
        ("GET / HTTP/11", .invalidVersion),
        ("GET / HTTP/1.x", .invalidVersion),
        ("GET / HTTPS/1.1", .invalidVersion),
        ("GET / / HTTP/1.1", .invalidRequestTarget),
        ("GET * HTTP/1.1", .invalidRequestTarget),
        ("OPTIONS * HTTP/1.1", .invalidRequestTarget),
        ("CONNECT example.com:443 HTTP/1.1", .invalidRequestTarget),
        ("GET a/b HTTP/1.1", .invalidRequestTarget),
        ("GET /a#frag HTTP/1.1", .invalidRequestTarget),
        ("GET /\u{7F} HTTP/1.1", .invalidRequestTarget),
        ("GET /é HTTP/1.1", .invalidRequestTarget),
        ("GET /a\u{0}b HTTP/1.1", .invalidRequestTarget),
        ("GET ftp://x/ HTTP/1.1", .invalidRequestTarget),
        ("GET http:/x HTTP/1.1", .invalidRequestTarget),
        ("GET http:/// HTTP/1.1", .invalidRequestTarget),
        ("GET http://?q HTTP/1.1", .invalidRequestTarget),
        ("GET http://user@h/ HTTP/1.1", .invalidHost),
        ("GET /\r HTTP/1.1", .bareCarriageReturn),
        ("GET / HTTP/1.1\r", .bareCarriageReturn),
        ("GET\r/ HTTP/1.1", .bareCarriageReturn),
    ]

    @Test("refused request lines", arguments: refused)
    func refusedLine(_ line: String, _ error: HTTPParseError) {
        #expect(parseWhole(request(line, ["Host: example"])) == .error(error))
    }

    @Test("status codes of request-line errors")
    func statuses() {
        #expect(HTTPParseError.unsupportedVersion.status == 505)
        #expect(HTTPParseError.invalidVersion.status == 400)
        #expect(HTTPParseError.invalidMethod.status == 400)
        #expect(HTTPParseError.invalidRequestTarget.status == 400)
        #expect(!HTTPParseError.invalidRequestTarget.reason.isEmpty)
        #expect(HTTPParseError.unsupportedVersion.description.hasPrefix("505 "))
    }

    @Test("empty lines before the request line are skipped and consumed")
    func leadingEmptyLines() throws {
        let text = "\r\n\n\r\n" + request()
        let decoded = try #require(parseWhole(text).request)
        #expect(decoded.method == "GET")
        #expect(decoded.consumed == text.utf8.count)
        #expect(decoded.headLength == text.utf8.count)
    }

    @Test("a request line ended by a bare LF is accepted; bare CR is not")
    func lineEndings() throws {
        let lf = try #require(parseWhole("GET /a HTTP/1.1\nHost: h\n\n").request)
        #expect(lf.path == "/a")
        #expect(lf.headers == [["Host", "h"]])
        let mixed = try #require(parseWhole("GET /a HTTP/1.1\r\nHost: h\nX: y\r\n\n").request)
        #expect(mixed.headers == [["Host", "h"], ["X", "y"]])
        #expect(parseWhole("GET /a HTTP/1.1\rHost: h\r\n\r\n") == .error(.bareCarriageReturn))
        #expect(parseWhole("GET /a HTTP/1.1\r\nHost: h\r\n\r\r\n") == .error(.bareCarriageReturn))
        #expect(parseWhole("GET /a HTTP/1.1\r\r\nHost: h\r\n\r\n") == .error(.bareCarriageReturn))
    }

    @Test("every tchar is a method byte, and no other byte is")
    func tokenBytes() {
        let tchars = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        for byte in UInt8(0)...UInt8(255) where byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\n") {
            var input: [UInt8] = [UInt8(ascii: "G"), byte]
            input += Array(text: " / HTTP/1.1\r\nHost: h\r\n\r\n")
            var violations: [String] = []
            let result = parseWhole(input, violations: &violations)
            if tchars.contains(byte) {
                #expect(result.request != nil, "byte \(byte)")
            } else {
                #expect(result.error != nil, "byte \(byte)")
            }
            #expect(violations.isEmpty)
        }
    }
}
