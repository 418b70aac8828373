@testable import LuaSandbox
import CLuaSandbox
import Testing

/// Loading, errors, and the request/response contract.
@Suite struct LuaScriptTests {
    @Test func stringResultIsPlainText200() throws {
        let script = try load(#"function handle(req) return "hello\n" end"#)
        let response = try script.call().get()
        #expect(response == CopiedResponse(status: 200, headers: ["content-type": "text/plain"], body: "hello\n"))
    }

    @Test func requestConversion() throws {
        let script = try load("""
            function handle(req)
              local h = req.headers
              return table.concat({req.method, req.path, req.query, req.body, h["x-a"], h["content-type"],
                                   tostring(h["X-A"]), tostring(h["Content-Type"])}, "|")
            end
            """)
        let full = try script.call(
            method: "POST", path: "/a/b", query: "x=1&y=2",
            headers: [("X-A", "1"), ("Content-Type", "text/html"), ("x-a", "2"), ("X-a", "3")],
            body: "payload"
        ).get()
        #expect(full.body == "POST|/a/b|x=1&y=2|payload|1, 2, 3|text/html|nil|nil")

        // No query and no body are empty strings, never nil.
        let empty = try load("""
            function handle(req)
              return type(req.query) .. ":" .. #req.query .. "|" .. type(req.body) .. ":" .. #req.body
                .. "|" .. type(req.headers) .. ":" .. tostring(next(req.headers))
            end
            """).call().get()
        #expect(empty.body == "string:0|string:0|table:nil")
    }

    @Test func requestBytesArePassedExactly() throws {
        // NUL and non-UTF-8-looking bytes survive; long upper-case names are lowered too.
        let longName = String(repeating: "X", count: 300)
        let script = try load("""
            function handle(req)
              return #req.body .. "|" .. tostring(req.headers[string.rep("x", 300)])
            end
            """)
        let response = try script.call(headers: [(longName, "v")], body: "a\u{0}b").get()
        #expect(response.body == "3|v")
    }

    @Test func tableResponse() throws {
        let script = try load("""
            function handle(req)
              return { status = 201, headers = { ["Content-Type"] = "application/json", ["x-n"] = 5 }, body = '{"ok":true}' }
            end
            """)
        let response = try script.call().get()
        #expect(response == CopiedResponse(
            status: 201, headers: ["Content-Type": "application/json", "x-n": "5"], body: #"{"ok":true}"#))

        let defaults = try load("function handle(req) return {} end").call().get()
        #expect(defaults == CopiedResponse(status: 200, headers: [:], body: ""))
    }

    @Test(arguments: [
        (#"return { headers = { ["x-a"] = "a\r\nSet-Cookie: x=1" } }"#, "control character"),
        (#"return { headers = { ["x-a"] = "a\nb" } }"#, "control character"),
        (#"return { headers = { ["x-a"] = "a\0b" } }"#, "control character"),
        (#"return { headers = { ["bad name"] = "v" } }"#, "invalid character in header name"),
        (#"return { headers = { ["x\r\ny"] = "v" } }"#, "invalid character in header name"),
        (#"return { headers = { [""] = "v" } }"#, "empty header name"),
        (#"return { headers = { [1] = "v" } }"#, "header names must be strings"),
        (#"return { headers = { ["x-a"] = true } }"#, "must be a string"),
        (#"return { headers = "x" }"#, "headers must be a table"),
        (#"local h = {} for i = 1, 65 do h["x-" .. i] = "v" end return { headers = h }"#, "more than 64 headers"),
        (#"return { body = 42 }"#, "body must be a string"),
        (#"return { body = {} }"#, "body must be a string"),
        (#"return { status = 600 }"#, "status must be an integer from 200 to 599"),
        (#"return { status = 99 }"#, "status must be an integer from 200 to 599"),
        (#"return { status = "200" }"#, "status must be an integer from 200 to 599"),
        (#"return { status = 200.5 }"#, "status must be an integer from 200 to 599"),
        (#"return nil"#, "expected a string or a table, got nil"),
        (#"return 42"#, "expected a string or a table, got number"),
        (#"return function() end"#, "expected a string or a table, got function"),
    ])
    func badResponsesAreScriptErrors(body: String, expected: String) throws {
        let script = try load("function handle(req) \(body) end", name: "resp.lua")
        let error = try #require(failure(script.call()))
        #expect(error.kind == .scriptError)
        #expect(error.message.hasPrefix("resp.lua: bad response from handle: "), "\(error.message)")
        #expect(error.message.contains(expected), "\(error.message)")
        // The state still answers.
        #expect(failure(script.call()) != nil)
    }

    @Test func sixtyFourHeadersAndFloatStatusAreFine() throws {
        let script = try load(#"""
            function handle(req)
              local h = {} for i = 1, 64 do h["x-" .. i] = i end
              return { status = 204.0, headers = h }
            end
            """#)
        let response = try script.call().get()
        #expect(response.status == 204)
        #expect(response.headers.count == 64)
        #expect(response.headers["x-64"] == "64")
    }

    @Test func responseMetamethodsNeverRun() throws {
        // Raw access only: a response (or headers) table whose __index raises is read
        // as if it had no metatable.
        let script = try load("""
            local boom = { __index = function() error("boom") end, __pairs = function() error("boom") end }
            function handle(req)
              if req.path == "/headers" then
                return { headers = setmetatable({ ["x-a"] = "1" }, boom), body = "b" }
              end
              return setmetatable({}, boom)
            end
            """)
        #expect(try script.call().get() == CopiedResponse(status: 200, headers: [:], body: ""))
        #expect(try script.call(path: "/headers").get() == CopiedResponse(status: 200, headers: ["x-a": "1"], body: "b"))
    }

    @Test func runtimeErrorNamesChunkAndLine() throws {
        let script = try load("""
            function handle(req)
              local rule = nil
              return rule.execute
            end
            """, name: "hello.lua")
        let error = try #require(failure(script.call()))
        #expect(error.kind == .scriptError)
        #expect(error.message == "hello.lua:3: attempt to index a nil value (local 'rule')")
        #expect(error.description == "script-error: hello.lua:3: attempt to index a nil value (local 'rule')")
    }

    @Test func nonStringErrorValues() throws {
        let script = try load("""
            function handle(req)
              if req.path == "/n" then error(42) end
              error(setmetatable({}, { __tostring = function() while true do end end }))
            end
            """, name: "e.lua")
        #expect(try #require(failure(script.call(path: "/n"))).message == "e.lua: 42")
        let error = try #require(failure(script.call()))
        #expect(error.message == "e.lua: error object is a table value")
    }

    @Test func syntaxErrorReportsTheLine() throws {
        let error = try #require(loadFailure("""
            function handle(req)
              local x = 1 +
            end
            """, name: "broken.lua"))
        #expect(error.kind == .syntax)
        #expect(error.message.hasPrefix("broken.lua:3:"), "\(error.message)")
    }

    @Test func missingHandle() throws {
        let error = try #require(loadFailure("x = 1", name: "nohandle.lua"))
        #expect(error.kind == .scriptError)
        #expect(error.message == "nohandle.lua: script does not define function handle(req)")

        let notFunction = try #require(loadFailure("handle = 'x'"))
        #expect(notFunction.message.contains("does not define function handle(req)"))

        // A script that removes its own handle later fails per request.
        let script = try load("function handle(req) handle = nil return 'once' end")
        #expect(script.body() == "once")
        #expect(try #require(failure(script.call())).message.contains("does not define function handle(req)"))
    }

    @Test func errorInTopLevelChunk() throws {
        let error = try #require(loadFailure("error('nope')", name: "top.lua"))
        #expect(error.kind == .scriptError)
        #expect(error.message == "top.lua:1: nope")
    }

    @Test func luaHeaderHasTheLayoutCReads() {
        // C reads a buffer of LuaHeader as bh_header: one stored property of that type.
        #expect(MemoryLayout<LuaHeader>.size == MemoryLayout<bh_header>.size)
        #expect(MemoryLayout<LuaHeader>.stride == MemoryLayout<bh_header>.stride)
        #expect(MemoryLayout<LuaHeader>.alignment == MemoryLayout<bh_header>.alignment)
    }

    @Test func warmStateKeepsGlobals() throws {
        let counter = try Counter()
        for _ in 0..<5 {
            counter.tick()
        }
    }

    @Test func reentrantCallIsRefused() throws {
        let script = try load("function handle(req) return 'x' end")
        // The call from inside a response closure is refused; the outer one is unharmed.
        let nested = script.handle(LuaRequest(method: .init(start: nil, count: 0), path: .init(start: nil, count: 0),
                                              query: .init(start: nil, count: 0), headers: .init(start: nil, count: 0),
                                              body: .init(start: nil, count: 0))) { response -> (String, Result<CopiedResponse, ScriptError>) in
            let body = String(decoding: response.body, as: UTF8.self)
            return (body, script.call())
        }
        let (body, innerResult) = try nested.get()
        #expect(body == "x")
        let error = try #require(failure(innerResult))
        #expect(error.kind == .scriptError)
        #expect(error.message.contains("called again during a call"))
        #expect(script.body() == "x")
    }

    @Test func callFromTheLogCallbackIsRefused() throws {
        // The log callback runs in the middle of a call; starting another call on the
        // same state there would reset its budget. It is refused.
        final class Holder { var script: LuaScript?; var inner: Result<CopiedResponse, ScriptError>? }
        let holder = Holder()
        let script = try load("function handle(req) log('x') return 'outer' end", log: { _ in
            if let script = holder.script { holder.inner = script.call() }
        })
        holder.script = script
        #expect(script.body() == "outer")
        let inner = try #require(holder.inner)
        #expect(try #require(failure(inner)).message.contains("called again during a call"))
        holder.script = nil
    }

    @Test func aCallWithADeadlineSaysWhenItEnded() throws {
        func monotonic() -> UInt64 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        }
        let script = try load("function handle(req) return 'x' end")
        let before = monotonic()
        #expect(script.body() == "x")
        let after = monotonic()
        #expect(script.finishedAt >= before && script.finishedAt <= after)

        // The caller may give the start: the deadline counts from it.
        let late = script.call(startedAt: monotonic() - 2_000_000_000)
        #expect(try #require(failure(late)).kind == .limitWall)
        #expect(script.body() == "x")

        script.limits = SandboxLimits(instructions: 0, memoryBytes: 32 << 20, wallMilliseconds: 0)
        #expect(script.body() == "x")
        #expect(script.finishedAt == 0, "no deadline, no clock read")
    }

    @Test func tinyMemoryCaps() throws {
        let none = try #require(loadFailure("function handle(req) return 'x' end",
                                           limits: SandboxLimits(instructions: 0, memoryBytes: 1000, wallMilliseconds: 0)))
        #expect(none.kind == .limitMemory)
        // Enough for the sandbox, not for what the chunk wants.
        let chunk = try #require(loadFailure("big = string.rep('x', 1 << 20) function handle(req) return 'x' end",
                                            limits: SandboxLimits(instructions: 0, memoryBytes: 256 << 10, wallMilliseconds: 0)))
        #expect(chunk.kind == .limitMemory)
        let fits = try load("function handle(req) return 'x' end",
                            limits: SandboxLimits(instructions: 0, memoryBytes: 256 << 10, wallMilliseconds: 0))
        #expect(fits.body() == "x")
        #expect(fits.memoryUsed < 256 << 10)
    }

    @Test func logLinesReachTheCallback() throws {
        let lines = Recorder<String>()
        let script = try load("""
            log("loaded")
            function handle(req)
              log("a", 1, 2.5, true, nil, setmetatable({}, { __tostring = function() return "T" end }))
              log("multi\\nline\\r")
              log(string.rep("x", 5000))
              log()
              return "ok"
            end
            """, log: { lines.record($0) })
        #expect(script.body() == "ok")
        let values = lines.values
        #expect(values.count == 5)
        guard values.count == 5 else { return }
        #expect(values[0] == "loaded")
        #expect(values[1] == "a\t1\t2.5\ttrue\tnil\tT")
        #expect(values[2] == "multi line ")
        #expect(values[3] == String(repeating: "x", count: 4096) + "...")
        #expect(values[4] == "")
    }

    @Test func limitsCanChange() throws {
        let script = try load("""
            function handle(req)
              local n = 0
              for i = 1, 100000 do n = n + i end
              return tostring(n)
            end
            """)
        #expect(script.body() == "5000050000")
        script.limits = SandboxLimits(instructions: 10_000, memoryBytes: 32 << 20, wallMilliseconds: 1000)
        #expect(try #require(failure(script.call())).kind == .limitCPU)
        script.limits = .unlimited
        #expect(script.body() == "5000050000")
        script.limits = freeLimits
        #expect(script.body() == "5000050000")
        #expect(script.limits == freeLimits)
        #expect(script.memoryUsed > 0)
    }

    @Test func aSmallBudgetChargesEachCallOnlyItsOwnInstructions() throws {
        // About 300 instructions a call under a budget of one hook period (1,000, the
        // smallest a cohort allows): every call is inside it. The count the hook kept
        // from one call to the next used to charge a later call a whole period.
        let script = try load("""
            function handle(req)
              local n = 0
              for i = 1, 150 do n = n + i end
              return tostring(n)
            end
            """)
        script.limits = SandboxLimits(instructions: 1_000, memoryBytes: 32 << 20, wallMilliseconds: 1000)
        var failed: [String] = []
        for _ in 0..<100 {
            if case .failure(let error) = script.call() { failed.append(error.message) }
        }
        #expect(failed.isEmpty, "\(failed.count) of 100 calls of ~300 instructions failed under a 1,000-instruction budget: \(failed.first ?? "")")
        // The budget still holds: a call of ~4,000 instructions is stopped.
        let heavy = try load("""
            function handle(req)
              local n = 0
              for i = 1, 2000 do n = n + i end
              return tostring(n)
            end
            """)
        heavy.limits = script.limits
        #expect(try #require(failure(heavy.call())).kind == .limitCPU)
    }
}
