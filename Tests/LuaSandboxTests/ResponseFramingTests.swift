@testable import LuaSandbox
import Testing

/// What a script may not put in its response because it would break HTTP framing or
/// pose as bulkhead: a 1xx status, bulkhead's own headers, a body on 204 or 304.
@Suite struct ResponseFramingTests {
    @Test("a header given a list of strings goes out as one line per value, in order")
    func headerListsAreOneLineEach() throws {
        let script = try load("""
            function handle(req)
              return { headers = { ["set-cookie"] = { "a=1; Path=/", "b=2; HttpOnly" }, ["x-empty"] = {} }, body = "x" }
            end
            """, name: "cookies.lua")
        let response = try #require(try? script.call().get())
        #expect(response.lines == ["set-cookie: a=1; Path=/", "set-cookie: b=2; HttpOnly"])
        let bad = try load(#"function handle(req) return { headers = { ["set-cookie"] = { "a=1", 2 } } } end"#, name: "bad.lua")
        #expect(failure(bad.call())?.message == "bad.lua: bad response from handle: the values of header 'set-cookie' must be strings, got number")
        let split = try load(#"function handle(req) return { headers = { ["set-cookie"] = { "a=1\r\nx: y" } } } end"#, name: "split.lua")
        #expect(failure(split.call())?.kind == .scriptError)
        let notAList = try load(#"function handle(req) return { headers = { ["x-a"] = { "1", x = "2" } } } end"#, name: "n.lua")
        #expect(failure(notAList.call())?.message.contains("got a table that is not a list") == true)
        let reserved = try load(#"function handle(req) return { headers = { ["x-request-id"] = { "1" } } } end"#, name: "r.lua")
        #expect(failure(reserved.call())?.message.contains("is reserved") == true)
    }

    @Test("a 1xx status is a script error: an interim response would let the body pose as the final one",
          arguments: [100, 101, 103, 199])
    func interimStatusIsAScriptError(_ status: Int) throws {
        let script = try load("""
            function handle(req)
              return { status = \(status), body = "HTTP/1.1 200 OK\\r\\nx-bulkhead-pool: forged\\r\\ncontent-length: 2\\r\\n\\r\\nhi" }
            end
            """, name: "interim.lua")
        let error = try #require(failure(script.call()))
        #expect(error.kind == .scriptError)
        #expect(error.message.hasPrefix("interim.lua: bad response from handle: status \(status) is an interim (1xx) response"),
                "\(error.message)")
        #expect(error.message.contains("from 200 to 599"))
    }

    @Test("bulkhead's own headers set by a script are a script error, in any case",
          arguments: ["x-bulkhead-error", "X-Bulkhead-Error", "x-bulkhead-pool", "X-BULKHEAD-WORKER", "x-bulkhead-",
                      "x-bulkhead-anything", "x-request-id", "X-Request-Id", "X-REQUEST-ID"])
    func reservedHeaderIsAScriptError(_ name: String) throws {
        let script = try load("""
            function handle(req)
              return { status = 200, headers = { ["content-type"] = "text/plain", ["\(name)"] = "no-script" }, body = "x" }
            end
            """, name: "reserved.lua")
        let error = try #require(failure(script.call()))
        #expect(error.kind == .scriptError)
        #expect(error.message == "reserved.lua: bad response from handle: header '\(name)' is reserved (bulkhead sets x-bulkhead-* and x-request-id itself)")
    }

    @Test("names that only look like bulkhead's pass",
          arguments: ["x-bulkhead", "x-bulkheads", "x-request-ids", "x-request-i", "x-requestid", "xx-bulkhead-pool",
                      "y-bulkhead-pool", "x_bulkhead-pool", "request-id", "x-req"])
    func similarNamesPass(_ name: String) throws {
        let script = try load("""
            function handle(req) return { headers = { ["\(name)"] = "v" }, body = "ok" } end
            """)
        let response = try script.call().get()
        #expect(response.headers == [name: "v"])
        #expect(response.body == "ok")
    }

    @Test("204 and 304 come out of the conversion without the script's body", arguments: [204, 304])
    func noContentDropsTheBody(_ status: Int) throws {
        let script = try load("""
            function handle(req)
              return { status = \(status), headers = { etag = '"v1"' }, body = "HTTP/1.1 200 OK\\r\\n\\r\\nsmuggled" }
            end
            """)
        let response = try script.call().get()
        #expect(response == CopiedResponse(status: status, headers: ["etag": "\"v1\""], body: ""))
    }

    @Test("other statuses keep their body, 200 to 599")
    func otherStatusesKeepTheirBody() throws {
        let script = try load("""
            function handle(req) return { status = tonumber(req.query), body = "b" .. req.query } end
            """)
        for status in [200, 201, 205, 206, 301, 303, 399, 404, 500, 599] {
            let response = try script.call(query: String(status)).get()
            #expect(response.status == status)
            #expect(response.body == "b\(status)")
        }
    }
}
