import LuaSandbox
import Testing

/// What a script must not reach: files, processes, bytecode, the debug library,
/// modules, stdout, another script's state.
@Suite struct SandboxEscapeTests {
    /// Evaluates `expression` inside `handle` and returns its `tostring`.
    func evaluate(_ expression: String) throws -> String {
        let script = try load("function handle(req) return tostring(\(expression)) end")
        return script.body()
    }

    @Test(arguments: [
        "io", "debug", "package", "require", "dofile", "loadfile", "print", "warn",
        "os.execute", "os.getenv", "os.exit", "os.remove", "os.rename", "os.tmpname", "os.setlocale",
        "string.dump", "getmetatable('').__index.dump", "collectgarbage and nil", "loadstring", "module",
    ])
    func unreachable(name: String) throws {
        #expect(try evaluate(name) == "nil", "\(name)")
    }

    @Test(arguments: [
        "type(string.format)", "type(table.concat)", "type(math.floor)", "type(utf8.char)",
        "type(coroutine.wrap)", "type(os.time)", "type(os.clock)", "type(os.date)",
        "type(json.encode)", "type(json.decode)", "type(log)", "type(pcall)", "type(load)",
        "type(setmetatable)", "type(_G)", "type(json.null) == 'userdata'", "_G == _ENV", "_VERSION",
    ])
    func available(expression: String) throws {
        let value = try evaluate(expression)
        #expect(["function", "table", "true", "Lua 5.4"].contains(value), "\(expression) = \(value)")
    }

    @Test func bytecodeCannotBeLoaded() throws {
        let script = try load(#"""
            function handle(req)
              local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86\0\0\0\0\0\0\0\0\0\0\0\40\119\64\1")
              local g, err2 = load("\27Lua", "x", "b")
              local ok = pcall(function() return string.dump(handle) end)
              return tostring(f) .. "|" .. err .. "|" .. tostring(g) .. "|" .. err2 .. "|" .. tostring(ok)
            end
            """#)
        let body = script.body()
        #expect(body.hasPrefix("nil|"), "\(body)")
        #expect(body.contains("attempt to load a binary chunk (mode is 't')"), "\(body)")
        #expect(body.hasSuffix("|false"), "\(body)")

        // The script itself cannot be bytecode either.
        let error = try #require(loadFailure("\u{1B}Lua\u{54}\u{0}"))
        #expect(error.kind == .syntax)
        #expect(error.message.contains("binary chunk"))
    }

    @Test func loadIsTextOnlyWithTheSandboxGlobals() throws {
        let script = try load("""
            secret = "mine"
            function handle(req)
              local f = load("return secret, io, print")
              local a, b, c = f()
              local g = load("return x", "chunk", "t", { x = "env" })
              local h, err = load("return (", "=broken")
              local ok, e = pcall(load, function() return nil end)
              return table.concat({ a, tostring(b), tostring(c), g(), tostring(h), err, tostring(ok) }, "|")
            end
            """)
        #expect(script.body() == "mine|nil|nil|env|nil|broken:1: unexpected symbol near <eof>|false")
    }

    @Test func collectgarbageOnlyCounts() throws {
        let script = try load("""
            function handle(req)
              local ok, err = pcall(collectgarbage)
              local ok2 = pcall(collectgarbage, "stop")
              return type(collectgarbage("count")) .. "|" .. tostring(ok) .. "|" .. tostring(ok2) .. "|" .. err
            end
            """)
        #expect(script.body() == #"number|false|false|collectgarbage: only "count" is allowed in the sandbox"#)
    }

    @Test func osKeepsOnlyTimeClockDate() throws {
        let script = try load("""
            function handle(req)
              local names = {}
              for k in pairs(os) do names[#names + 1] = k end
              table.sort(names)
              return table.concat(names, ",") .. "|" .. os.date("!%Y", 0) .. "|" .. os.time({year = 2000, month = 1, day = 1, hour = 0}) // 1 * 0
            end
            """)
        #expect(script.body() == "clock,date,time|1970|0")
    }

    @Test func globalsAndStringMetatableAreIsolated() throws {
        let first = try load("""
            shared = "first"
            getmetatable("").__index.upper = function() return "hacked" end
            string.lower = nil
            function handle(req) return ("abc"):upper() .. "|" .. tostring(shared) end
            """)
        let second = try load("""
            function handle(req) return ("abc"):upper() .. "|" .. tostring(shared) .. "|" .. type(string.lower) end
            """)
        #expect(first.body() == "hacked|first")
        #expect(second.body() == "ABC|nil|function")
    }

    @Test func setmetatableKeepsItsRules() throws {
        let script = try load("""
            function handle(req)
              local t = setmetatable({}, { __metatable = "locked", __index = function() return 1 end })
              local ok, err = pcall(setmetatable, t, {})
              local ok2, err2 = pcall(setmetatable, "s", {})
              return tostring(t.x) .. "|" .. getmetatable(t) .. "|" .. err .. "|" .. tostring(ok2)
            end
            """)
        #expect(script.body() == "1|locked|cannot change a protected metatable|false")
    }
}
