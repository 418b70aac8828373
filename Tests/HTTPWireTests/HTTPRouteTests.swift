import HTTPWire
import Testing

@Suite("Routing by Host and path")
struct HTTPRouteTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var host: String?
        var path: String
        /// customer, script, the script's path; nil: no route (404).
        var expected: (String, String, String)?
        var addressing: HTTPRoute.Addressing = .path
        var testDescription: String { "\(host ?? "nil") \(path)" }
    }

    static let cases: [Case] = [
        // By host: three or more labels, not an IP address.
        Case(host: "hello.acme.localhost", path: "/x/y", expected: ("acme", "hello", "/x/y"), addressing: .host),
        Case(host: "hello.acme.localhost:8101", path: "/", expected: ("acme", "hello", "/"), addressing: .host),
        Case(host: "Hello.ACME.Localhost:8101", path: "/A", expected: ("acme", "hello", "/A"), addressing: .host),
        Case(host: "api.shop.example.com", path: "/acme/hello/x", expected: ("shop", "api", "/acme/hello/x"), addressing: .host),
        Case(host: "api.shop.example.com.", path: "/", expected: ("shop", "api", "/"), addressing: .host),
        Case(host: "a.b.c", path: "/p", expected: ("b", "a", "/p"), addressing: .host),
        Case(host: "0.9-x.example", path: "/p", expected: ("9-x", "0", "/p"), addressing: .host),
        Case(host: "s.c.10", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: "-bad.acme.localhost", path: "/acme/hello", expected: nil),
        Case(host: "hello_.acme.localhost", path: "/", expected: nil),
        Case(host: "hello.ac%6de.localhost", path: "/", expected: nil),
        Case(host: "hello..localhost", path: "/acme/hello", expected: nil),
        Case(host: ".acme.localhost", path: "/acme/hello", expected: nil),
        Case(host: String(repeating: "s", count: 63) + ".acme.localhost", path: "/", expected: ("acme", String(repeating: "s", count: 63), "/"), addressing: .host),
        Case(host: String(repeating: "s", count: 64) + ".acme.localhost", path: "/", expected: nil),
        // By path: IP literals, localhost, one or two labels, no Host.
        Case(host: "127.0.0.1", path: "/acme/hello/x", expected: ("acme", "hello", "/x")),
        Case(host: "127.0.0.1:8101", path: "/acme/hello/x/y/", expected: ("acme", "hello", "/x/y/")),
        Case(host: "1.2.3", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: "[::1]:8101", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: "[2001:db8::1]", path: "/acme/hello/", expected: ("acme", "hello", "/")),
        Case(host: "localhost", path: "/acme/hello/", expected: ("acme", "hello", "/")),
        Case(host: "localhost:8101", path: "/acme/hello/a/b", expected: ("acme", "hello", "/a/b")),
        Case(host: "LOCALHOST", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: "example.com", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: "example.com:80", path: "/acme/hello//x", expected: ("acme", "hello", "//x")),
        Case(host: "myhost", path: "/a-1/b-2", expected: ("a-1", "b-2", "/")),
        Case(host: "", path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: nil, path: "/acme/hello", expected: ("acme", "hello", "/")),
        Case(host: nil, path: "/0/9/", expected: ("0", "9", "/")),
        Case(host: nil, path: "/acme/" + String(repeating: "s", count: 63), expected: ("acme", String(repeating: "s", count: 63), "/")),
        Case(host: nil, path: "/acme/" + String(repeating: "s", count: 64), expected: nil),
        Case(host: nil, path: "/Acme/hello", expected: nil),
        Case(host: nil, path: "/acme/Hello", expected: nil),
        Case(host: nil, path: "/acme", expected: nil),
        Case(host: nil, path: "/acme/", expected: nil),
        Case(host: nil, path: "/", expected: nil),
        Case(host: nil, path: "", expected: nil),
        Case(host: nil, path: "//hello", expected: nil),
        Case(host: nil, path: "/-acme/hello", expected: nil),
        Case(host: nil, path: "/acme/-hello", expected: nil),
        Case(host: nil, path: "/acme/hel.lo", expected: nil),
        Case(host: nil, path: "/acme/hello%20", expected: nil),
        Case(host: nil, path: "/acme/héllo", expected: nil),
        Case(host: nil, path: "acme/hello", expected: nil),
    ]

    @Test("resolve(host:path:)", arguments: cases)
    func resolve(_ case_: Case) {
        let hostBytes = case_.host.map { Array($0.utf8) }
        let pathBytes = Array(case_.path.utf8)
        let route: HTTPRoute? = pathBytes.withUnsafeBytes { path in
            if let hostBytes {
                return hostBytes.withUnsafeBytes { HTTPRoute.resolve(host: $0, path: path) }
            }
            return HTTPRoute.resolve(host: nil, path: path)
        }
        guard let expected = case_.expected else {
            #expect(route == nil)
            return
        }
        guard let route else {
            Issue.record("no route")
            return
        }
        #expect(route.customer == expected.0)
        #expect(route.script == expected.1)
        #expect(route.addressing == case_.addressing)
        let scriptPath = pathBytes.withUnsafeBytes { string($0, route.scriptPath) }
        #expect(scriptPath == expected.2)
    }

    @Test("a parsed request routes with its query kept out of the script's path")
    func fromParsedRequest() throws {
        let input = Array(text: request("GET /acme/hello/x/y?q=1&r HTTP/1.1", ["Host: 127.0.0.1:8101"]))
        var parser = HTTPRequestParser()
        try input.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            let route = try #require(HTTPRoute.resolve(head, in: bytes))
            #expect(route.customer == "acme")
            #expect(route.script == "hello")
            #expect(string(bytes, route.scriptPath) == "/x/y")
            #expect(string(bytes, head.query) == "q=1&r")
        }
        let bare = Array(text: request("GET /acme/hello?q HTTP/1.0", []))
        try bare.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            let route = try #require(HTTPRoute.resolve(head, in: bytes))
            #expect(string(bytes, route.scriptPath) == "/")
        }
        let byHost = Array(text: request("GET /a/b?c HTTP/1.1", ["Host: Hello.Acme.localhost:8101"]))
        try byHost.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            let route = try #require(HTTPRoute.resolve(head, in: bytes))
            #expect(route == HTTPRoute(customer: "acme", script: "hello", scriptPath: head.path, addressing: .host))
            #expect(string(bytes, route.scriptPath) == "/a/b")
        }
        let absolute = Array(text: request("GET http://s.c.example/p HTTP/1.1", ["Host: 127.0.0.1"]))
        try absolute.withUnsafeBytes { bytes in
            guard case .request(let head) = parser.parse(bytes) else {
                Issue.record("not parsed")
                return
            }
            let route = try #require(HTTPRoute.resolve(head, in: bytes))
            #expect(route.customer == "c")
            #expect(route.script == "s")
        }
    }

    static let names: [(String, Bool)] = [
        ("a", true), ("0", true), ("acme", true), ("a-b-9", true), ("a-", true),
        (String(repeating: "x", count: 63), true), (String(repeating: "x", count: 64), false),
        ("", false), ("-a", false), ("A", false), ("a_b", false), ("a.b", false), ("é", false), ("a b", false),
    ]

    @Test("names are [a-z0-9][a-z0-9-]{0,62}", arguments: names)
    func name(_ name: String, _ valid: Bool) {
        #expect(HTTPRoute.isValidName(name) == valid)
    }
}
