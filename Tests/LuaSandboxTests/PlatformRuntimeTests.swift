import BulkheadCore
@testable import LuaSandbox
import Testing

// DefaultRuntime comes from BulkheadCore: the tests run the very text the workers load.

/// A verdict with copied values, for assertions.
enum Outcome: Equatable, CustomStringConvertible {
    case pass
    case block(Int, String)
    case failed(ScriptErrorKind, String)

    init(_ verdict: PlatformVerdict) {
        switch verdict {
        case .pass: self = .pass
        case .block(let status, let body): self = .block(status, String(decoding: body, as: UTF8.self))
        case .failed(let error): self = .failed(error.kind, error.message)
        }
    }

    var description: String {
        switch self {
        case .pass: "pass"
        case .block(let status, let body): "block \(status) \(body.debugDescription)"
        case .failed(let kind, let message): "failed \(kind.rawValue): \(message)"
        }
    }

    /// The message of a failure, or nil.
    var message: String? {
        if case .failed(_, let message) = self { message } else { nil }
    }
}

extension PlatformRuntime {
    /// Evaluates a request made of strings.
    func check(
        _ method: String = "GET",
        _ path: String = "/",
        query: String = "",
        headers: [(String, String)] = [],
        body: String = ""
    ) -> Outcome {
        let arena = ByteArena()
        let luaHeaders = headers.map { LuaHeader(name: arena.bytes($0.0), value: arena.bytes($0.1)) }
        return luaHeaders.withUnsafeBufferPointer { headerBuffer in
            let request = LuaRequest(
                method: arena.bytes(method),
                path: arena.bytes(path),
                query: arena.bytes(query),
                headers: headerBuffer,
                body: arena.bytes(body)
            )
            return Outcome(evaluate(request))
        }
    }

    /// Loads rules given as JSON text (must load).
    func load(rules json: String) throws(PlatformRulesError) {
        try loadRules(Array(json.utf8))
    }
}

/// The default runtime with `rules` loaded, logging into `logs` when given.
func defaultRuntime(rules: String? = nil, logs: Recorder<String>? = nil) throws -> PlatformRuntime {
    let runtime = try PlatformRuntime(source: DefaultRuntime.source, log: { logs?.record($0) })
    if let rules {
        try runtime.load(rules: rules)
    }
    return runtime
}

/// The rules engine (DefaultRuntime.source) through PlatformRuntime: each matcher and
/// action, and what a request that matches nothing gets.
@Suite struct DefaultRuntimeRulesTests {
    static let blocked = Outcome.block(403, "blocked by a rule\n")

    @Test func passesWithoutRulesOrWithEmptyRules() throws {
        let bare = try defaultRuntime()
        #expect(bare.check() == .pass)
        let empty = try defaultRuntime(rules: #"{"rules": [], "rulesets": {}}"#)
        #expect(empty.check("POST", "/admin") == .pass)
        let noRulesets = try defaultRuntime(rules: #"{"rules": []}"#)
        #expect(noRulesets.check() == .pass)
    }

    @Test func passesWhenNothingMatches() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "m", "when": {"method": "DELETE"}, "action": "block"},
              {"id": "p", "when": {"path_prefix": "/admin"}, "action": "block"},
              {"id": "h", "when": {"header": {"name": "x-evil", "present": true}}, "action": "block"},
              {"id": "q", "when": {"query": {"contains": "drop table"}}, "action": "block"}
            ]}
            """#)
        #expect(runtime.check("GET", "/public", query: "a=1", headers: [("x-good", "1")]) == .pass)
    }

    @Test func blocksByMethod() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "one", "when": {"method": "DELETE"}, "action": "block"},
              {"id": "list", "when": {"method": ["PUT", "PATCH"]}, "action": "block", "status": 405, "body": "no writes\n"}
            ]}
            """#)
        #expect(runtime.check("DELETE") == Self.blocked)
        #expect(runtime.check("PATCH") == .block(405, "no writes\n"))
        #expect(runtime.check("PUT") == .block(405, "no writes\n"))
        #expect(runtime.check("GET") == .pass)
        // Methods are case-sensitive.
        #expect(runtime.check("delete") == .pass)
    }

    @Test func ruleStringsAreMatchedLiterallyNeverRunAsCode() throws {
        // The engine generates Lua from the rules: every string must stay a quoted
        // constant, whatever it holds (quotes, backslashes, newlines, NUL, brackets,
        // pattern characters, text that would close the string and add code).
        // JSON text: decodes to /x" or true or "<LF>]]%.*<NUL>end
        let nasty = #"/x\" or true or \"\n]]%.*\u0000end"#
        let runtime = try defaultRuntime(rules: """
            {"rules": [
              {"id": "m", "when": {"method": "GET\\" or true or \\""}, "action": "block", "status": 405},
              {"id": "p", "when": {"path_prefix": "\(nasty)"}, "action": "block", "status": 401},
              {"id": "h", "when": {"header": {"name": "x-\\"]", "equals": "a\\"\\nb"}}, "action": "block", "status": 402},
              {"id": "q", "when": {"query": {"contains": "\\")) os.exit() --"}}, "action": "block", "status": 404},
              {"id": "r", "when": {"query": {"param": "k\\"", "equals": "v\\n"}}, "action": "block", "status": 406}
            ]}
            """)
        // Nothing here matches unless the strings are taken literally.
        #expect(runtime.check("GET", "/x") == .pass)
        #expect(runtime.check("GET", "/anything", query: "a=1", headers: [("x-other", "1")]) == .pass)
        // Each rule matches its own literal text.
        #expect(runtime.check("GET\" or true or \"") == .block(405, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/x\" or true or \"\n]]%.*\u{0}end/more") == .block(401, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/", headers: [("X-\"]", "a\"\nb")]) == .block(402, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/", query: "z=\")) os.exit() --") == .block(404, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/", query: "k%22=v%0A") == .block(406, "blocked by a rule\n"))
    }

    @Test func blocksByPathPrefix() throws {
        let runtime = try defaultRuntime(rules: #"{"rules": [{"id": "admin", "when": {"path_prefix": "/admin"}, "action": "block"}]}"#)
        #expect(runtime.check("GET", "/admin") == Self.blocked)
        #expect(runtime.check("GET", "/admin/users") == Self.blocked)
        #expect(runtime.check("GET", "/adm") == .pass)
        #expect(runtime.check("GET", "/x/admin") == .pass)
    }

    @Test func blocksByHeader() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "eq", "when": {"header": {"name": "X-Tenant", "equals": "evil"}}, "action": "block", "status": 451},
              {"id": "has", "when": {"header": {"name": "user-agent", "contains": "sqlmap"}}, "action": "block", "status": 406},
              {"id": "present", "when": {"header": {"name": "x-debug", "present": true}}, "action": "block", "status": 400},
              {"id": "absent", "when": {"path_prefix": "/api", "header": {"name": "authorization", "present": false}}, "action": "block", "status": 401}
            ]}
            """#)
        // Names are compared in lower case (the request's names are lowered too).
        #expect(runtime.check(headers: [("x-tenant", "evil")]) == .block(451, "blocked by a rule\n"))
        #expect(runtime.check(headers: [("X-TENANT", "evil")]) == .block(451, "blocked by a rule\n"))
        #expect(runtime.check(headers: [("x-tenant", "evil-twin")]) == .pass)
        #expect(runtime.check(headers: [("User-Agent", "curl sqlmap/1.7")]) == .block(406, "blocked by a rule\n"))
        #expect(runtime.check(headers: [("user-agent", "curl/8")]) == .pass)
        #expect(runtime.check(headers: [("X-Debug", "")]) == .block(400, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/api/x") == .block(401, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/api/x", headers: [("Authorization", "Bearer t")]) == .pass)
    }

    @Test func blocksByQuery() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "raw", "when": {"query": {"contains": "union select"}}, "action": "block"},
              {"id": "param", "when": {"query": {"param": "debug", "equals": "on now"}}, "action": "block", "status": 400}
            ]}
            """#)
        #expect(runtime.check(query: "q=1 union select 2") == Self.blocked)
        // `contains` looks at the raw query string; `param` at decoded parameters.
        #expect(runtime.check(query: "q=union%20select") == .pass)
        #expect(runtime.check(query: "a=1&debug=on+now") == .block(400, "blocked by a rule\n"))
        #expect(runtime.check(query: "debug=on%20now") == .block(400, "blocked by a rule\n"))
        #expect(runtime.check(query: "%64ebug=on%20now&x") == .block(400, "blocked by a rule\n"))
        #expect(runtime.check(query: "debug=on") == .pass)
        #expect(runtime.check(query: "xdebug=on+now") == .pass)
        #expect(runtime.check(query: "") == .pass)
    }

    @Test func everyMatcherMustHold() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [{"id": "all", "when": {
                "method": ["POST"], "path_prefix": "/login",
                "header": {"name": "content-type", "contains": "json"},
                "query": {"param": "v", "equals": "2"}
              }, "action": "block", "status": 429, "body": "slow down\n"}]}
            """#)
        let headers = [("Content-Type", "application/json")]
        #expect(runtime.check("POST", "/login", query: "v=2", headers: headers) == .block(429, "slow down\n"))
        #expect(runtime.check("GET", "/login", query: "v=2", headers: headers) == .pass)
        #expect(runtime.check("POST", "/logout", query: "v=2", headers: headers) == .pass)
        #expect(runtime.check("POST", "/login", query: "v=3", headers: headers) == .pass)
        #expect(runtime.check("POST", "/login", query: "v=2", headers: [("content-type", "text/plain")]) == .pass)
    }

    @Test func logCallsLogAndPasses() throws {
        let logs = Recorder<String>()
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "seen", "when": {"path_prefix": "/a"}, "action": "log", "message": "someone at /a"},
              {"id": "plain", "action": "log"}
            ]}
            """#, logs: logs)
        #expect(runtime.check("GET", "/a/b") == .pass)
        #expect(runtime.check("PUT", "/c") == .pass)
        #expect(logs.values == [
            "rule seen: someone at /a (GET /a/b)",
            "rule plain: matched (GET /a/b)",
            "rule plain: matched (PUT /c)",
        ])
    }

    @Test func firstBlockingRuleWins() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "first", "when": {"path_prefix": "/x"}, "action": "block", "status": 418},
              {"id": "second", "action": "block", "status": 503}
            ]}
            """#)
        #expect(runtime.check("GET", "/x") == .block(418, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/y") == .block(503, "blocked by a rule\n"))
    }

    @Test func skipStopsTheCurrentList() throws {
        let logs = Recorder<String>()
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "trusted", "when": {"header": {"name": "x-internal", "equals": "yes"}}, "action": "skip"},
              {"id": "inner", "action": "execute", "ruleset": "checks"},
              {"id": "after", "action": "log"},
              {"id": "wall", "when": {"path_prefix": "/admin"}, "action": "block"}
            ],
            "rulesets": {"checks": [
              {"id": "health", "when": {"path_prefix": "/health"}, "action": "skip"},
              {"id": "deep", "when": {"path_prefix": "/health"}, "action": "block", "status": 500},
              {"id": "bots", "when": {"header": {"name": "user-agent", "contains": "bot"}}, "action": "block", "status": 402}
            ]}}
            """#, logs: logs)
        // Top-level skip: nothing after it runs, the request passes.
        #expect(runtime.check("GET", "/admin", headers: [("x-internal", "yes")]) == .pass)
        #expect(logs.values.isEmpty)
        // Skip inside a ruleset ends that ruleset only; the top list goes on.
        #expect(runtime.check("GET", "/health", headers: [("user-agent", "bot")]) == .pass)
        #expect(logs.values == ["rule after: matched (GET /health)"])
        #expect(runtime.check("GET", "/admin") == Self.blocked)
        #expect(runtime.check("GET", "/", headers: [("user-agent", "a bot")]) == .block(402, "blocked by a rule\n"))
    }

    @Test func executeEvaluatesTheRuleset() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "api", "when": {"path_prefix": "/api"}, "action": "execute", "ruleset": "api"},
              {"id": "tail", "when": {"path_prefix": "/api/open"}, "action": "block", "status": 409}
            ],
            "rulesets": {
              "api": [
                {"id": "writes", "when": {"method": ["POST", "DELETE"]}, "action": "execute", "ruleset": "writes"},
                {"id": "secret", "when": {"path_prefix": "/api/secret"}, "action": "block", "status": 404, "body": "nothing here\n"}
              ],
              "writes": [
                {"id": "no-delete", "when": {"method": "DELETE"}, "action": "block", "status": 405}
              ]
            }}
            """#)
        #expect(runtime.check("GET", "/api/secret/x") == .block(404, "nothing here\n"))
        #expect(runtime.check("DELETE", "/api/items/1") == .block(405, "blocked by a rule\n"))
        // Nothing in the rulesets blocks: the top list goes on after the execute rule.
        #expect(runtime.check("POST", "/api/open") == .block(409, "blocked by a rule\n"))
        #expect(runtime.check("POST", "/api/items") == .pass)
        #expect(runtime.check("DELETE", "/web") == .pass)
    }

    @Test func killswitchSkipsTheRuleAsIfAbsent() throws {
        let runtime = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "off", "when": {"path_prefix": "/a"}, "action": "block", "status": 500, "killswitch": true},
              {"id": "on", "when": {"path_prefix": "/a/b"}, "action": "block", "status": 418, "killswitch": false},
              {"id": "skip-off", "action": "skip", "killswitch": true},
              {"id": "exec-off", "action": "execute", "ruleset": "all", "killswitch": true},
              {"id": "late", "when": {"path_prefix": "/late"}, "action": "block"}
            ],
            "rulesets": {"all": [{"id": "everything", "action": "block", "status": 503}]}}
            """#)
        #expect(runtime.check("GET", "/a") == .pass)
        #expect(runtime.check("GET", "/a/b") == .block(418, "blocked by a rule\n"))
        // The skip and the execute rule are off: evaluation reaches "late" and
        // nothing from the ruleset blocks.
        #expect(runtime.check("GET", "/late") == Self.blocked)
        #expect(runtime.check("GET", "/other") == .pass)
    }

    @Test func refusedFilesFailVisiblyNotSilently() throws {
        // Files the validator refuses can still reach a worker by mistake: the engine
        // raises (a platform error, the request passes) instead of guessing.
        let missing = try defaultRuntime(rules: #"{"rules": [{"id": "x", "action": "execute", "ruleset": "nope"}]}"#)
        let message = try #require(missing.check().message)
        #expect(message.hasPrefix("runtime.lua:"))
        #expect(message.contains("rule x executes ruleset nope, which does not exist"))

        let unknown = try defaultRuntime(rules: #"{"rules": [{"id": "x", "action": "frobnicate"}]}"#)
        #expect(unknown.check().message?.contains("rule x: unknown action frobnicate") == true)

        // A loop the validator would refuse is cut at the depth limit.
        let loop = try defaultRuntime(rules: #"""
            {"rules": [{"id": "in", "action": "execute", "ruleset": "a"}],
             "rulesets": {"a": [{"id": "ab", "action": "execute", "ruleset": "b"}],
                          "b": [{"id": "ba", "action": "execute", "ruleset": "a"}]}}
            """#)
        #expect(loop.check().message?.contains("rulesets nest deeper than 8") == true)

        // Malformed matchers never match (and do not throw).
        let odd = try defaultRuntime(rules: #"""
            {"rules": [
              {"id": "a", "when": {"header": "x"}, "action": "block"},
              {"id": "b", "when": {"method": 5}, "action": "block"},
              {"id": "c", "when": {"query": {"param": "x"}}, "action": "block"},
              {"id": "d", "when": 7, "action": "block"}
            ]}
            """#)
        #expect(odd.check() == .pass)
    }

    @Test func executeChainOfEightIsFollowed() throws {
        // The validator's limit: 8 rulesets deep. The engine follows exactly that far.
        var rulesets: [String] = []
        for depth in 1...8 {
            let next = depth < 8
                ? #"{"id": "go\#(depth)", "action": "execute", "ruleset": "s\#(depth + 1)"}"#
                : #"{"id": "bottom", "action": "block", "status": 488}"#
            rulesets.append(#""s\#(depth)": [\#(next)]"#)
        }
        let json = #"{"rules": [{"id": "top", "action": "execute", "ruleset": "s1"}], "rulesets": {\#(rulesets.joined(separator: ", "))}}"#
        let runtime = try defaultRuntime(rules: json)
        #expect(runtime.check() == .block(488, "blocked by a rule\n"))
        #expect(DefaultRuntime.maximumDepth == 8)
    }

    @Test func defaultRuntimeNeverWritesToTheRequest() throws {
        // Reads go through the proxy: a read-only request table raises on any write.
        let source = DefaultRuntime.source.replacingFirst(
            "function on_request(req, rules)",
            with: """
                local default_on_request = nil
                function on_request(req, rules)
                  local function frozen(t)
                    return setmetatable({}, { __index = t, __newindex = function() error("req written") end })
                  end
                  local view = frozen(req)
                  rawset(view, "headers", frozen(req.headers))
                  return default_on_request(view, rules)
                end
                function default_on_request(req, rules)
                """)
        let runtime = try PlatformRuntime(source: source)
        try runtime.load(rules: #"""
            {"rules": [
              {"id": "l", "action": "log"},
              {"id": "e", "action": "execute", "ruleset": "s", "killswitch": true},
              {"id": "x", "action": "execute", "ruleset": "s"},
              {"id": "h", "when": {"header": {"name": "x-a", "contains": "1"}, "query": {"param": "a", "equals": "b"}}, "action": "block"}
            ], "rulesets": {"s": [{"id": "sk", "when": {"method": "GET"}, "action": "skip"}]}}
            """#)
        #expect(runtime.check("GET", "/", query: "a=b", headers: [("X-A", "1")]) == DefaultRuntimeRulesTests.blocked)
        #expect(runtime.check("POST", "/x", query: "q", headers: [("X-B", "1")]) == .pass)
    }
}

/// The December replay: the latent bug of the old proxy, put back into an otherwise
/// identical runtime, fires only once an `execute` rule's killswitch is on.
@Suite struct LatentBugTests {
    static let currentRules = #"""
        {"rules": [
          {"id": "waf", "when": {"path_prefix": "/app"}, "action": "execute", "ruleset": "managed"},
          {"id": "admin", "when": {"path_prefix": "/admin"}, "action": "block"}
        ],
        "rulesets": {"managed": [
          {"id": "sqli", "when": {"query": {"contains": "union select"}}, "action": "block", "status": 406}
        ]}}
        """#

    /// The same rules with the execute rule switched off by its killswitch.
    static let killswitchedRules = currentRules.replacingFirst(
        #""ruleset": "managed"}"#, with: #""ruleset": "managed", "killswitch": true}"#)

    @Test func theVariantsDifferOnlyInTheExecuteCheck() {
        let good = DefaultRuntime.source.split(separator: "\n", omittingEmptySubsequences: false)
        let bad = DefaultRuntime.latentBugSource.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(good.count == bad.count)
        let differing = zip(good, bad).filter { $0 != $1 }
        #expect(differing.count == 2)
        #expect(differing.last?.1.trimmingSpaces == #"if rule_result.action == "execute" then"#)
    }

    @Test func latentBugPassesWithTheCurrentRules() throws {
        let runtime = try PlatformRuntime(source: DefaultRuntime.latentBugSource)
        try runtime.load(rules: Self.currentRules)
        #expect(runtime.check("GET", "/app/items") == .pass)
        #expect(runtime.check("GET", "/app/items", query: "id=1 union select pw") == .block(406, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/admin") == DefaultRuntimeRulesTests.blocked)
        #expect(runtime.check("GET", "/") == .pass)
    }

    @Test func latentBugThrowsOnceAnExecuteRuleIsKillswitched() throws {
        let runtime = try PlatformRuntime(source: DefaultRuntime.latentBugSource)
        try runtime.load(rules: Self.killswitchedRules)
        for _ in 0..<3 {
            guard case .failed(let kind, let message) = runtime.check("GET", "/app/items") else {
                Issue.record("expected the latent bug to throw")
                return
            }
            #expect(kind == .scriptError)
            #expect(message.hasPrefix("runtime.lua:"))
            #expect(message.hasSuffix("attempt to index a nil value (field 'execute')"), "\(message)")
            // Signature-ready: "runtime.lua:N: message", the line between colons.
            let parts = message.split(separator: ":", maxSplits: 2)
            #expect(parts.count == 3 && Int(parts[1]) != nil, "\(message)")
        }
        // Requests the killswitched rule does not match are untouched.
        #expect(runtime.check("GET", "/admin") == DefaultRuntimeRulesTests.blocked)
        #expect(runtime.check("GET", "/") == .pass)
        // Rolling the rules back heals the same warm state.
        try runtime.load(rules: Self.currentRules)
        #expect(runtime.check("GET", "/app/items") == .pass)
    }

    @Test func defaultRuntimeDoesNotThrowWithTheKillswitchOn() throws {
        let runtime = try defaultRuntime(rules: Self.killswitchedRules)
        #expect(runtime.check("GET", "/app/items") == .pass)
        // The rule is off as if absent: its ruleset no longer blocks.
        #expect(runtime.check("GET", "/app/items", query: "union select") == .pass)
        #expect(runtime.check("GET", "/admin") == DefaultRuntimeRulesTests.blocked)
    }
}

/// PlatformRuntime itself: loading, rules, verdicts, failures, limits, warm state.
@Suite struct PlatformRuntimeTests {
    @Test func runtimeThatThrowsFailsWithASignatureReadyMessage() throws {
        let runtime = try PlatformRuntime(source: """
            function on_request(req, rules)
              local t = nil
              return t.field
            end
            """)
        let outcome = runtime.check()
        #expect(outcome == .failed(.scriptError, "runtime.lua:3: attempt to index a nil value (local 't')"))

        let raising = try PlatformRuntime(source: #"function on_request(req, rules) error("boom") end"#)
        #expect(raising.check() == .failed(.scriptError, "runtime.lua:1: boom"))
        let bare = try PlatformRuntime(source: #"function on_request(req, rules) error({}) end"#)
        #expect(bare.check() == .failed(.scriptError, "runtime.lua: error object is a table value"))
    }

    @Test func runtimeThatLoopsHitsTheCPULimit() throws {
        let runtime = try PlatformRuntime(source: """
            calls = 0
            function on_request(req, rules)
              calls = calls + 1
              if req.path == "/spin" then
                while true do pcall(function() while true do end end) end
              end
              return nil
            end
            """)
        guard case .failed(let kind, let message) = runtime.check("GET", "/spin") else {
            Issue.record("expected a limit")
            return
        }
        #expect(kind == .limitCPU)
        #expect(message.hasPrefix("runtime.lua:"))
        #expect(message.hasSuffix("instruction limit exceeded"))
        // Warm: the next call works, and the state kept its globals.
        #expect(runtime.check() == .pass)
        #expect(runtime.check() == .pass)
    }

    @Test func platformBudgetIsCountedLazilyWithinItsStatedRange() throws {
        // 1M instructions, counted lazily: a call is stopped after between 500k and
        // 1M. About 4 instructions an iteration (FORLOOP, GETTABUP, ADD, SETTABUP).
        #expect(PlatformRuntime.defaultLimits.instructions >= PlatformRuntime.lazyCountingThreshold)
        let runtime = try PlatformRuntime(source: """
            n = 0
            function on_request(req, rules)
              local iterations = tonumber(req.query) or 0
              for i = 1, iterations do n = n + 1 end
              return nil
            end
            """)
        // About 400k instructions: under the earliest stop, for every call.
        for _ in 0..<20 {
            #expect(runtime.check("GET", "/", query: "100000") == .pass)
        }
        // Lazy: the call ran with no hook from its first instruction. A customer
        // script with the same budget is counted by the hook from the start.
        #expect(runtime.state.context.pointee.lazy == 1)
        let script = try LuaScript(chunkName: "same.lua", source: "function handle(req) return 'ok' end",
                                   limits: PlatformRuntime.defaultLimits)
        #expect((try? script.call().get())?.body == "ok")
        #expect(script.state.context.pointee.lazy == 0)
        // About 4M: well past the budget, whenever the tick lands.
        guard case .failed(let kind, let message) = runtime.check("GET", "/", query: "1000000") else {
            Issue.record("expected the instruction limit")
            return
        }
        #expect(kind == .limitCPU)
        #expect(message.hasSuffix("instruction limit exceeded"))
        #expect(runtime.check() == .pass)
    }

    @Test func wallAndMemoryLimits() throws {
        let runtime = try PlatformRuntime(
            source: """
                function on_request(req, rules)
                  if req.path == "/big" then
                    local t = {}
                    for i = 1, 1e7 do t[i] = string.rep("x", 64) .. i end
                  end
                  if req.path == "/slow" then
                    local stop = os.clock() + 1
                    while os.clock() < stop do end
                  end
                  return nil
                end
                """,
            limits: SandboxLimits(instructions: 0, memoryBytes: 4 << 20, wallMilliseconds: 0))
        #expect(runtime.check("GET", "/big") == .failed(.limitMemory, "runtime.lua: memory limit of 4194304 bytes exceeded"))
        #expect(runtime.check() == .pass)
        runtime.limits = SandboxLimits(instructions: 100_000_000, memoryBytes: 16 << 20, wallMilliseconds: 20)
        #expect(runtime.check("GET", "/slow").message?.hasSuffix("wall-clock limit exceeded") == true)
        #expect(runtime.check() == .pass)
    }

    @Test func platformLimitsAreTheDefault() throws {
        #expect(PlatformRuntime.defaultLimits == SandboxLimits(instructions: 1_000_000, memoryBytes: 16 << 20, wallMilliseconds: 100))
        let runtime = try defaultRuntime()
        #expect(runtime.limits == PlatformRuntime.defaultLimits)
        #expect(runtime.memoryUsed > 0 && runtime.memoryUsed < 1 << 20)
    }

    @Test func warmStateAfterAFailedEvaluation() throws {
        // The latent-bug runtime fails on one kind of request and works on the rest,
        // in one state, alternating.
        let runtime = try PlatformRuntime(source: DefaultRuntime.latentBugSource)
        try runtime.load(rules: LatentBugTests.killswitchedRules)
        for _ in 0..<5 {
            #expect(runtime.check("GET", "/app").message != nil)
            #expect(runtime.check("GET", "/admin") == DefaultRuntimeRulesTests.blocked)
            #expect(runtime.check("GET", "/") == .pass)
        }
    }

    @Test func verdictsAreReadRawAndChecked() throws {
        let runtime = try PlatformRuntime(source: """
            function on_request(req, rules)
              local p = req.path
              if p == "/nil" then return nil end
              if p == "/block" then return { action = "block" } end
              if p == "/full" then return { action = "block", status = 451, body = "gone\\n" } end
              if p == "/float" then return { action = "block", status = 429.0 } end
              if p == "/string" then return "block" end
              if p == "/false" then return false end
              if p == "/allow" then return { action = "allow" } end
              if p == "/noaction" then return {} end
              if p == "/status" then return { action = "block", status = 700 } end
              if p == "/status-text" then return { action = "block", status = "403" } end
              if p == "/interim" then return { action = "block", status = 100, body = "forged head" } end
              if p == "/body" then return { action = "block", body = 5 } end
              if p == "/meta" then
                -- Raw access only: an __index that says "block" is never consulted.
                return setmetatable({}, { __index = function() return "block" end })
              end
              return nil
            end
            """)
        #expect(runtime.check("GET", "/nil") == .pass)
        #expect(runtime.check("GET", "/block") == .block(403, "blocked by a rule\n"))
        #expect(runtime.check("GET", "/full") == .block(451, "gone\n"))
        #expect(runtime.check("GET", "/float") == .block(429, "blocked by a rule\n"))
        let prefix = "runtime.lua: bad verdict from on_request: "
        #expect(runtime.check("GET", "/string") == .failed(.scriptError, prefix + "expected nil or a table, got string"))
        #expect(runtime.check("GET", "/false") == .failed(.scriptError, prefix + "expected nil or a table, got boolean"))
        #expect(runtime.check("GET", "/allow") == .failed(.scriptError, prefix + #"action must be "block" (return nil to pass), got allow"#))
        #expect(runtime.check("GET", "/noaction") == .failed(.scriptError, prefix + #"action must be "block" (return nil to pass), got nil"#))
        #expect(runtime.check("GET", "/meta") == .failed(.scriptError, prefix + #"action must be "block" (return nil to pass), got nil"#))
        #expect(runtime.check("GET", "/status") == .failed(.scriptError, prefix + "status must be an integer from 200 to 599"))
        #expect(runtime.check("GET", "/status-text") == .failed(.scriptError, prefix + "status must be an integer from 200 to 599"))
        // An interim status would let a body frame a second response.
        #expect(runtime.check("GET", "/interim") == .failed(.scriptError, prefix + "status must be an integer from 200 to 599"))
        #expect(runtime.check("GET", "/body") == .failed(.scriptError, prefix + "body must be a string, got number"))
        #expect(runtime.check("GET", "/nil") == .pass)
    }

    @Test func requestIsTheScriptsTableAndFreshEveryCall() throws {
        let logs = Recorder<String>()
        let runtime = try PlatformRuntime(source: """
            function on_request(req, rules)
              local names = {}
              for name in pairs(req.headers) do names[#names + 1] = name end
              table.sort(names)
              log(req.method, req.path, req.query, req.body, table.concat(names, ","), req.headers["x-a"], tostring(req.seen))
              -- Writes stay in this call's own table.
              req.seen = true
              req.path = "/rewritten"
              return nil
            end
            """, log: { logs.record($0) })
        #expect(runtime.check("POST", "/p", query: "a=1", headers: [("X-A", "1"), ("x-a", "2"), ("B", "3")], body: "hi") == .pass)
        #expect(runtime.check("GET", "/q") == .pass)
        #expect(logs.values == ["POST\t/p\ta=1\thi\tb,x-a\t1, 2\tnil", "GET\t/q\t\t\t\tnil\tnil"])
    }

    @Test func rulesAreDecodedOnceAndKeptUntilReplaced() throws {
        let runtime = try PlatformRuntime(source: """
            seen = {}
            function on_request(req, rules)
              seen[rules] = true
              local n = 0
              for _ in pairs(seen) do n = n + 1 end
              return { action = "block", status = 200 + n, body = tostring(rules.version) }
            end
            """)
        try runtime.load(rules: #"{"version": 1}"#)
        let first = runtime.check()
        #expect(runtime.check() == first)
        #expect(runtime.check() == first)
        guard case .block(let status, let body) = first else {
            Issue.record("expected a block, got \(first)")
            return
        }
        #expect(body == "1")
        try runtime.load(rules: #"{"version": 2}"#)
        #expect(runtime.check() == .block(status + 1, "2"))
    }

    @Test func rulesDoNotDependOnTheRuntimesGlobals() throws {
        // The decoder is the sandbox's own, not the runtime's `json` global.
        let runtime = try PlatformRuntime(source: """
            json = nil
            function on_request(req, rules) return { action = "block", body = rules.name } end
            """)
        try runtime.load(rules: #"{"name": "kept"}"#)
        #expect(runtime.check() == .block(403, "kept"))
    }

    @Test func badRulesAreRefusedAndTheLastGoodOnesStay() throws {
        let runtime = try defaultRuntime(rules: #"{"rules": [{"id": "a", "action": "block"}]}"#)
        #expect(runtime.check() == DefaultRuntimeRulesTests.blocked)

        #expect(throws: PlatformRulesError.self) { try runtime.load(rules: #"{"rules": [,]}"#) }
        do {
            try runtime.load(rules: #"{"rules": [1,]}"#)
            Issue.record("trailing comma accepted")
        } catch {
            #expect(error.message == "rules: json.decode: unexpected character at byte 14")
        }
        do {
            try runtime.load(rules: "[1, 2]")
            Issue.record("array accepted")
        } catch {
            #expect(error.message == "rules: the top level must be a JSON object, got an array")
        }
        do {
            try runtime.load(rules: "\"x\"")
            Issue.record("string accepted")
        } catch {
            #expect(error.message == "rules: the top level must be a JSON object, got a string")
        }
        do {
            try runtime.loadRules(Array(#"{"rules": []}"#.utf8), validatedBy: { _ in "rules: 400 rules, more than the limit of 200" })
            Issue.record("refused rules loaded")
        } catch {
            #expect(error.message == "rules: 400 rules, more than the limit of 200")
        }
        // Still the last good rules.
        #expect(runtime.check() == DefaultRuntimeRulesTests.blocked)
        // And what the validator accepts loads.
        try runtime.loadRules(Array(#"{"rules": []}"#.utf8), validatedBy: { _ in nil })
        #expect(runtime.check() == .pass)
    }

    @Test func rulesOverTheMemoryCapAreRefused() throws {
        let runtime = try PlatformRuntime(
            source: DefaultRuntime.source,
            limits: SandboxLimits(instructions: 1_000_000, memoryBytes: 512 << 10, wallMilliseconds: 100))
        let big = #"{"rules": [], "pad": ""# + String(repeating: "x", count: 600 << 10) + #""}"#
        do {
            try runtime.load(rules: big)
            Issue.record("rules over the cap loaded")
        } catch {
            #expect(error.message == "rules: runtime.lua: memory limit of 524288 bytes exceeded")
        }
        try runtime.load(rules: #"{"rules": [{"id": "a", "action": "block"}]}"#)
        #expect(runtime.check() == DefaultRuntimeRulesTests.blocked)
    }

    @Test func loadingErrors() throws {
        func loadError(_ source: String) -> ScriptError? {
            do {
                _ = try PlatformRuntime(source: source)
                return nil
            } catch {
                return error
            }
        }
        let syntax = try #require(loadError("function on_request(req, rules)\n  return (\nend\n"))
        #expect(syntax.kind == .syntax)
        #expect(syntax.message.hasPrefix("runtime.lua:3:"), "\(syntax)")

        let missing = try #require(loadError("function handle(req) end"))
        #expect(missing.kind == .scriptError)
        #expect(missing.message == "runtime.lua: script does not define function on_request(req, rules)")

        let raising = try #require(loadError("error('no')"))
        #expect(raising.message == "runtime.lua:1: no")

        let spinning = try #require(loadError("while true do end"))
        #expect(spinning.kind == .limitCPU)

        let binary = try #require(loadError("\u{1B}Lua"))
        #expect(binary.kind == .syntax)
    }

    @Test func checkSyntaxCompilesWithoutRunning() throws {
        #expect(PlatformRuntime.checkSyntax(source: DefaultRuntime.source) == nil)
        #expect(PlatformRuntime.checkSyntax(source: DefaultRuntime.latentBugSource) == nil)
        // Never run: neither the loop nor the error happens, and no on_request is needed.
        #expect(PlatformRuntime.checkSyntax(source: "while true do end") == nil)
        #expect(PlatformRuntime.checkSyntax(source: "error('ran')") == nil)

        let error = try #require(PlatformRuntime.checkSyntax(source: "local x = 1\nfunction on_request(req, rules)\n  if x then\nend\n"))
        #expect(error.kind == .syntax)
        #expect(error.message.hasPrefix("runtime.lua:5:"), "\(error)")
        #expect(error.message.contains("'end' expected"), "\(error)")

        let binary = try #require(PlatformRuntime.checkSyntax(source: [0x1B, 0x4C, 0x75, 0x61, 0x54, 0x00]))
        #expect(binary.kind == .syntax)
        #expect(binary.message.contains("binary chunk"), "\(binary)")
    }

    @Test func reentrantCallsAreRefused() throws {
        let box = RuntimeBox()
        let results = Recorder<String>()
        let runtime = try PlatformRuntime(source: "function on_request(req, rules) log('x') end", log: { _ in
            guard let inner = box.runtime else { return }
            results.record(inner.check().description)
            do throws(PlatformRulesError) {
                try inner.load(rules: "{}")
                results.record("loaded")
            } catch {
                results.record(error.message)
            }
        })
        box.runtime = runtime
        #expect(runtime.check() == .pass)
        #expect(results.values == [
            "failed script-error: runtime.lua: on_request called again during a call of the same runtime",
            "rules: cannot be loaded during a call of the runtime",
        ])
        box.runtime = nil
    }
}

/// Lets a log callback reach the runtime that calls it (tests of re-entrancy).
private final class RuntimeBox {
    var runtime: PlatformRuntime?
}

extension String {
    /// The string with the first occurrence of `target` replaced (the whole string
    /// unchanged when there is none).
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        var result = self
        result.replaceSubrange(range, with: replacement)
        return result
    }

    /// The string without leading and trailing spaces.
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

extension Substring {
    /// The substring without leading and trailing spaces.
    var trimmingSpaces: String { String(self).trimmingSpaces }
}
