import Testing

@testable import BulkheadCore

/// The rules artifact's validation: what passes, and each refusal with its message.
@Suite struct RulesValidatorTests {
    /// The message of the refusal of `json`, or nil (and a recorded issue) if it passed.
    func refusal(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> RulesError? {
        switch RulesValidator.validate(Array(json.utf8)) {
        case .success(let summary):
            Issue.record("expected a refusal, got \(summary)", sourceLocation: sourceLocation)
            return nil
        case .failure(let error):
            return error
        }
    }

    /// Expects `json` refused with exactly `message` (and `kind`, when given).
    func expectRefused(_ json: String, _ message: String, kind: RulesError.Kind? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = refusal(json, sourceLocation: sourceLocation) else { return }
        #expect(error.message == message, sourceLocation: sourceLocation)
        if let kind {
            #expect(error.kind == kind, sourceLocation: sourceLocation)
        }
    }

    /// A rules file of `count` blocking rules at the top level.
    static func file(topLevelRules count: Int) -> String {
        let rules = (0..<count).map { #"{"id": "r\#($0)", "when": {"path_prefix": "/p\#($0)"}, "action": "block"}"# }
        return #"{"rules": [\#(rules.joined(separator: ",\n"))]}"#
    }

    // MARK: Valid files

    @Test func fullFileIsValid() throws {
        let json = #"""
            {
              "rules": [
                {"id": "trusted", "when": {"header": {"name": "X-Internal", "equals": "yes"}}, "action": "skip"},
                {"id": "api", "when": {"path_prefix": "/api", "method": ["GET", "POST"]}, "action": "execute", "ruleset": "api"},
                {"id": "audit", "action": "log", "message": "seen"},
                {"id": "old", "when": {"query": {"param": "v", "equals": "1"}}, "action": "block", "status": 410, "body": "gone\n", "killswitch": true},
                {"id": "bots", "when": {"header": {"name": "user-agent", "contains": "bot"}, "method": "GET"}, "action": "block"},
                {"id": "probe", "when": {"header": {"name": "x-probe", "present": false}, "query": {"contains": "debug"}}, "action": "log"}
              ],
              "rulesets": {
                "api": [
                  {"id": "writes", "when": {"method": "POST"}, "action": "execute", "ruleset": "writes", "killswitch": false},
                  {"id": "any", "when": {}, "action": "log"}
                ],
                "writes": [{"id": "deny", "action": "block", "status": 405}],
                "unused": []
              }
            }
            """#
        let summary = try RulesValidator.validate(Array(json.utf8)).get()
        #expect(summary == RulesSummary(
            ruleCount: 9, topLevelRuleCount: 6, rulesetCount: 3, depth: 2, killswitchCount: 1, byteCount: json.utf8.count))
        #expect(RulesValidator.refusal(Array(json.utf8)) == nil)
    }

    @Test func smallFilesAreValid() throws {
        let empty = try RulesValidator.validate(Array(#"{"rules": []}"#.utf8)).get()
        #expect(empty.ruleCount == 0 && empty.rulesetCount == 0 && empty.depth == 0)
        let withRulesets = try RulesValidator.validate(Array(#"{"rules": [], "rulesets": {}}"#.utf8)).get()
        #expect(withRulesets.ruleCount == 0)
        // The worker's default rules.
        #expect(RulesValidator.refusal(Array(#"{"rules":[],"rulesets":{}}"#.utf8)) == nil)
        // Whitespace and a status given as 403.0 (the Lua side reads it as 403).
        #expect(RulesValidator.refusal(Array(" {\"rules\": [{\"id\": \"a\", \"action\": \"block\", \"status\": 403.0}]}\n".utf8)) == nil)
    }

    @Test func exactlyAtTheLimitsIsValid() throws {
        let rules200 = try RulesValidator.validate(Array(Self.file(topLevelRules: 200).utf8)).get()
        #expect(rules200.ruleCount == 200)

        // 32 rulesets; a chain of 8.
        var rulesets: [String] = []
        for index in 1...32 {
            let body = index < 8 ? #"[{"id": "go\#(index)", "action": "execute", "ruleset": "s\#(index + 1)"}]"# : "[]"
            rulesets.append(#""s\#(index)": \#(body)"#)
        }
        let json = #"{"rules": [{"id": "top", "action": "execute", "ruleset": "s1"}], "rulesets": {\#(rulesets.joined(separator: ", "))}}"#
        let summary = try RulesValidator.validate(Array(json.utf8)).get()
        #expect(summary.rulesetCount == 32)
        #expect(summary.depth == 8)
        #expect(RulesValidator.maximumDepth == DefaultRuntime.maximumDepth)
    }

    // MARK: Limits

    @Test func fourHundredRulesAreRefusedNamingTheLimitOf200() {
        expectRefused(Self.file(topLevelRules: 400), "rules: 400 rules, more than the limit of 200", kind: .tooManyRules)
        expectRefused(Self.file(topLevelRules: 201), "rules: 201 rules, more than the limit of 200", kind: .tooManyRules)
    }

    @Test func rulesInRulesetsCountTowardsTheLimit() {
        let ruleset = (0..<150).map { #"{"id": "s\#($0)", "action": "log"}"# }.joined(separator: ",")
        let json = #"{"rules": [\#((0..<60).map { #"{"id": "t\#($0)", "action": "log"}"# }.joined(separator: ","))], "rulesets": {"big": [\#(ruleset)]}}"#
        expectRefused(json, "rules: 210 rules, more than the limit of 200 (60 at the top level, 150 in 1 rulesets)", kind: .tooManyRules)
    }

    @Test func theCountComesFirst() {
        // Over the limit and broken in other ways: the limit is what is reported.
        let rules = (0..<250).map { _ in #"{"id": "same", "action": "frobnicate"}"# }.joined(separator: ",")
        expectRefused(#"{"rules": [\#(rules)]}"#, "rules: 250 rules, more than the limit of 200")
    }

    @Test func tooManyRulesets() {
        let rulesets = (0..<33).map { #""s\#($0)": []"# }.joined(separator: ", ")
        expectRefused(#"{"rules": [], "rulesets": {\#(rulesets)}}"#, "rules: 33 rulesets, more than the limit of 32", kind: .tooManyRulesets)
    }

    @Test func tooLarge() {
        let json = #"{"rules": [], "rulesets": {}}"# + String(repeating: " ", count: 256 * 1024)
        expectRefused(json, "rules: \(json.utf8.count) bytes, more than the limit of 262144 bytes (256 KiB)", kind: .tooLarge)
    }

    @Test func executeNestingDeeperThan8() {
        var rulesets: [String] = []
        for index in 1...9 {
            let body = index < 9 ? #"[{"id": "go\#(index)", "action": "execute", "ruleset": "s\#(index + 1)"}]"# : "[]"
            rulesets.append(#""s\#(index)": \#(body)"#)
        }
        let json = #"{"rules": [{"id": "top", "action": "execute", "ruleset": "s1"}], "rulesets": {\#(rulesets.joined(separator: ", "))}}"#
        expectRefused(json, "rules: execute nests 9 rulesets deep (s1 → s2 → s3 → s4 → s5 → s6 → s7 → s8 → s9), more than the limit of 8", kind: .tooDeep)
    }

    // MARK: Loops

    @Test func rulesetsThatExecuteEachOtherAreRefused() {
        expectRefused(#"""
            {"rules": [{"id": "in", "action": "execute", "ruleset": "a"}],
             "rulesets": {"a": [{"id": "ab", "action": "execute", "ruleset": "b"}],
                          "b": [{"id": "ba", "action": "execute", "ruleset": "a"}]}}
            """#, "rulesets a → b → a execute each other in a loop", kind: .cycle)
        // Loops are refused even when no rule reaches them, and even when switched off.
        expectRefused(#"""
            {"rules": [],
             "rulesets": {"x": [{"id": "xy", "action": "execute", "ruleset": "y"}],
                          "y": [{"id": "yz", "action": "execute", "ruleset": "z"}],
                          "z": [{"id": "zx", "action": "execute", "ruleset": "x", "killswitch": true}]}}
            """#, "rulesets x → y → z → x execute each other in a loop", kind: .cycle)
        // The loop is named from where it starts, not from the path that reached it.
        expectRefused(#"""
            {"rules": [],
             "rulesets": {"a": [{"id": "ab", "action": "execute", "ruleset": "b"}],
                          "b": [{"id": "bc", "action": "execute", "ruleset": "c"}],
                          "c": [{"id": "cb", "action": "execute", "ruleset": "b"}]}}
            """#, "rulesets b → c → b execute each other in a loop", kind: .cycle)
    }

    @Test func rulesetThatExecutesItselfIsRefused() {
        expectRefused(#"""
            {"rules": [{"id": "in", "action": "execute", "ruleset": "a"}],
             "rulesets": {"a": [{"id": "log", "action": "log"}, {"id": "again", "action": "execute", "ruleset": "a"}]}}
            """#, "ruleset a executes itself in a loop (a → a)", kind: .cycle)
    }

    @Test func diamondsAreNotLoops() throws {
        let summary = try RulesValidator.validate(Array(#"""
            {"rules": [{"id": "1", "action": "execute", "ruleset": "a"}, {"id": "2", "action": "execute", "ruleset": "b"}],
             "rulesets": {"a": [{"id": "ac", "action": "execute", "ruleset": "c"}],
                          "b": [{"id": "bc", "action": "execute", "ruleset": "c"}, {"id": "bc2", "action": "execute", "ruleset": "c"}],
                          "c": []}}
            """#.utf8)).get()
        #expect(summary.depth == 2)
    }

    // MARK: Structure

    @Test func notJSON() {
        expectRefused("", "rules: not valid JSON: Unexpected end of file during JSON parse.", kind: .notJSON)
        let broken = refusal(#"{"rules": [}"#)
        #expect(broken?.kind == .notJSON)
        #expect(broken?.message.hasPrefix("rules: not valid JSON: ") == true)
        // What the workers' strict decoder refuses is refused here too.
        expectRefused(#"{"rules": [{"id": "a", "action": "log"},]}"#, "rules: not valid JSON: a trailing comma at byte 40", kind: .notJSON)
        expectRefused(#"{"rules": [], }"#, "rules: not valid JSON: a trailing comma at byte 13", kind: .notJSON)
        expectRefused("\u{FEFF}{\"rules\": []}", "rules: not valid JSON: a byte order mark at the start (save the file as UTF-8 without one)", kind: .notJSON)
        expectRefused(#"{"rules": [{"id": "a", "action": "log", "action": "block"}]}"#,
                      #"rules: not valid JSON: the key "action" appears twice in one object (at byte 41)"#, kind: .notJSON)
        // Commas and keys inside strings are text, not structure.
        #expect(RulesValidator.refusal(Array(#"{"rules": [{"id": ",]}\"id\"", "action": "log", "message": "a,}"}]}"#.utf8)) == nil)
        // The same key in two objects is fine.
        #expect(RulesValidator.refusal(Array(#"{"rules": [{"id": "a", "action": "log"}, {"id": "b", "action": "log"}]}"#.utf8)) == nil)
    }

    @Test func topLevel() {
        expectRefused("[]", #"rules: the top level must be an object {"rules": [...], "rulesets": {...}}, got a list"#, kind: .schema)
        expectRefused("7", #"rules: the top level must be an object {"rules": [...], "rulesets": {...}}, got 7"#)
        expectRefused("{}", #"rules: missing "rules", the list of rules"#)
        expectRefused(#"{"rules": {}}"#, #"rules: "rules" must be a list of rules, got an object"#)
        expectRefused(#"{"rules": [], "rule": []}"#, #"rules: unknown key "rule" at the top level (known: rules, rulesets)"#)
        expectRefused(#"{"rules": [], "rulesets": []}"#, #"rules: "rulesets" must be an object of NAME: [rules], got a list"#)
        expectRefused(#"{"rules": [], "rulesets": {"a": {}}}"#, #"ruleset "a": must be a list of rules, got an object"#)
        expectRefused(#"{"rules": [], "rulesets": {"": []}}"#, "rules: a ruleset name must not be empty")
    }

    // MARK: Rules

    @Test func ids() {
        expectRefused(#"{"rules": ["r1"]}"#, #"rules[0]: a rule must be an object, got the string "r1""#)
        expectRefused(#"{"rules": [{"action": "log"}]}"#, #"rules[0]: missing "id""#)
        expectRefused(#"{"rules": [{"id": 7, "action": "log"}]}"#, #"rules[0]: "id" must be a string, got 7"#)
        expectRefused(#"{"rules": [{"id": "a", "action": "log"}, {"id": "", "action": "log"}]}"#, #"rules[1]: "id" must not be empty"#)
        expectRefused(#"{"rules": [], "rulesets": {"s": [{"id": null}]}}"#, #"rulesets.s[0]: "id" must be a string, got null"#)
        expectRefused(#"""
            {"rules": [{"id": "a", "action": "log"}, {"id": "b", "action": "execute", "ruleset": "s"}],
             "rulesets": {"s": [{"id": "a", "action": "block"}]}}
            """#, #"rule "a": id used twice (rules[0] and rulesets.s[0])"#, kind: .duplicateID)
    }

    @Test func actions() {
        expectRefused(#"{"rules": [{"id": "r7", "action": "frobnicate"}]}"#,
                      #"rule "r7": action "frobnicate" is not one of block, log, skip, execute"#, kind: .schema)
        expectRefused(#"{"rules": [{"id": "r7"}]}"#, #"rule "r7": missing "action" (one of block, log, skip, execute)"#)
        expectRefused(#"{"rules": [{"id": "r7", "action": ["block"]}]}"#, #"rule "r7": "action" must be a string, got a list"#)
        expectRefused(#"{"rules": [{"id": "r7", "action": "block", "stauts": 403}]}"#,
                      #"rule "r7": unknown key "stauts" (known: action, body, id, killswitch, message, ruleset, status, when)"#)
    }

    @Test func actionFields() {
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": 700}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got 700"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": 99}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got 99"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": 100}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got 100"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": 403.5}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got 403.5"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": "403"}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got the string "403""#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "status": true}]}"#, #"rule "r": "status" must be an integer from 200 to 599, got true"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "body": 1}]}"#, #"rule "r": "body" must be a string, got 1"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "log", "message": {}}]}"#, #"rule "r": "message" must be a string, got an object"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "log", "status": 403}]}"#, #"rule "r": "status" is only for action "block", not "log""#)
        expectRefused(#"{"rules": [{"id": "r", "action": "block", "message": "x"}]}"#, #"rule "r": "message" is only for action "log", not "block""#)
        expectRefused(#"{"rules": [{"id": "r", "action": "skip", "ruleset": "x"}]}"#, #"rule "r": "ruleset" is only for action "execute", not "skip""#)
        expectRefused(#"{"rules": [{"id": "r", "action": "execute"}]}"#, #"rule "r": action "execute" needs "ruleset", the name of the ruleset to evaluate"#)
        expectRefused(#"{"rules": [{"id": "r", "action": "execute", "ruleset": ""}]}"#, #"rule "r": "ruleset" must be the name of a ruleset, got the string """#)
        expectRefused(#"{"rules": [{"id": "r", "action": "log", "killswitch": "yes"}]}"#, #"rule "r": "killswitch" must be true or false, got the string "yes""#)
        expectRefused(#"{"rules": [{"id": "r", "action": "log", "killswitch": 1}]}"#, #"rule "r": "killswitch" must be true or false, got 1"#)
    }

    @Test func executeNamesAnExistingRuleset() {
        expectRefused(#"{"rules": [{"id": "r", "action": "execute", "ruleset": "nope"}]}"#,
                      #"rule "r": executes ruleset "nope", which is not defined (no ruleset is defined)"#, kind: .unknownRuleset)
        expectRefused(#"{"rules": [{"id": "r", "action": "execute", "ruleset": "nope", "killswitch": true}], "rulesets": {"b": [], "a": []}}"#,
                      #"rule "r": executes ruleset "nope", which is not defined (defined: a, b)"#, kind: .unknownRuleset)
    }

    @Test func matchers() {
        func rule(_ when: String) -> String { #"{"rules": [{"id": "r", "when": \#(when), "action": "block"}]}"# }
        expectRefused(rule("[]"), #"rule "r": "when" must be an object of matchers, got a list"#)
        expectRefused(rule(#"{"host": "x"}"#), #"rule "r": unknown matcher "host" in "when" (known: header, method, path_prefix, query)"#)
        expectRefused(rule(#"{"method": 1}"#), #"rule "r": "when.method" must be a method or a non-empty list of methods, got 1"#)
        expectRefused(rule(#"{"method": []}"#), #"rule "r": "when.method" must be a method or a non-empty list of methods, got a list"#)
        expectRefused(rule(#"{"method": ["GET", 2]}"#), #"rule "r": "when.method" must name HTTP methods (GET, POST, …), got 2"#)
        expectRefused(rule(#"{"method": "GET /"}"#), #"rule "r": "when.method" must name HTTP methods (GET, POST, …), got the string "GET /""#)
        expectRefused(rule(#"{"method": "get"}"#), #"rule "r": method "get" never matches: methods are case-sensitive, write "GET""#)
        expectRefused(rule(#"{"path_prefix": "admin"}"#), #"rule "r": "when.path_prefix" must be a string starting with "/", got the string "admin""#)
        expectRefused(rule(#"{"header": "x"}"#), #"rule "r": "when.header" must be an object {"name": …, "equals" | "contains" | "present": …}, got the string "x""#)
        expectRefused(rule(#"{"header": {"equals": "x"}}"#), #"rule "r": "when.header" needs "name", a header name, got none"#)
        expectRefused(rule(#"{"header": {"name": "a b", "equals": "x"}}"#), #"rule "r": "when.header" needs "name", a header name, got the string "a b""#)
        expectRefused(rule(#"{"header": {"name": "a"}}"#), #"rule "r": "when.header" needs exactly one of "equals", "contains", "present", got none"#)
        expectRefused(rule(#"{"header": {"name": "a", "equals": "x", "present": true}}"#), #"rule "r": "when.header" needs exactly one of "equals", "contains", "present", got equals, present"#)
        expectRefused(rule(#"{"header": {"name": "a", "present": "yes"}}"#), #"rule "r": "when.header.present" must be true or false, got the string "yes""#)
        expectRefused(rule(#"{"header": {"name": "a", "contains": 5}}"#), #"rule "r": "when.header.contains" must be a string, got 5"#)
        expectRefused(rule(#"{"header": {"name": "a", "equals": "x", "value": 1}}"#), #"rule "r": unknown key "value" in "when.header" (known: contains, equals, name, present)"#)
        expectRefused(rule(#"{"query": {}}"#), #"rule "r": "when.query" needs either "contains", or "param" with "equals""#)
        expectRefused(rule(#"{"query": {"param": "a"}}"#), #"rule "r": "when.query" needs either "contains", or "param" with "equals""#)
        expectRefused(rule(#"{"query": {"contains": "a", "param": "b", "equals": "c"}}"#), #"rule "r": "when.query" needs either "contains", or "param" with "equals""#)
        expectRefused(rule(#"{"query": {"contains": 1}}"#), #"rule "r": "when.query.contains" must be a string, got 1"#)
        expectRefused(rule(#"{"query": {"param": "", "equals": "1"}}"#), #"rule "r": "when.query.param" must be a parameter name, got the string """#)
        expectRefused(rule(#"{"query": {"param": "a", "equals": false}}"#), #"rule "r": "when.query.equals" must be a string, got false"#)
        expectRefused(rule(#"{"query": {"param": "a", "equal": "1"}}"#), #"rule "r": unknown key "equal" in "when.query" (known: contains, equals, param)"#)
        expectRefused(rule(#"{"query": []}"#), #"rule "r": "when.query" must be an object {"contains": …} or {"param": …, "equals": …}, got a list"#)
    }

    @Test func oddIDsStayReadable() {
        expectRefused(#"{"rules": [{"id": "a\"b\nc", "action": "nope"}]}"#,
                      #"rule "a\"b\nc": action "nope" is not one of block, log, skip, execute"#)
    }

    @Test func rulesetsAreCheckedInNameOrderAfterTheTopLevel() {
        expectRefused(#"""
            {"rules": [{"id": "t", "action": "log"}],
             "rulesets": {"zz": [{"id": "z", "action": "bad-z"}], "aa": [{"id": "a", "action": "bad-a"}]}}
            """#, #"rule "a": action "bad-a" is not one of block, log, skip, execute"#)
    }
}

/// The runtime artifact's checks that need no Lua.
@Suite struct RuntimeValidatorTests {
    @Test func defaultRuntimeIsValid() throws {
        let summary = try RuntimeValidator.validate(Array(DefaultRuntime.source.utf8)).get()
        #expect(summary.byteCount == DefaultRuntime.source.utf8.count)
        #expect(summary.lineCount > 100)
        #expect(RuntimeValidator.refusal(Array(DefaultRuntime.latentBugSource.utf8)) == nil)
        #expect(try RuntimeValidator.validate(Array("a\nb\n".utf8)).get().lineCount == 2)
        #expect(try RuntimeValidator.validate(Array("a\nb".utf8)).get().lineCount == 2)
    }

    @Test func refusals() {
        func message(_ data: [UInt8]) -> String? { RuntimeValidator.refusal(data) }
        #expect(message([]) == "runtime: the file is empty; a runtime must define function on_request(req, rules)")
        let big = [UInt8](repeating: UInt8(ascii: "-"), count: 256 * 1024 + 1)
        #expect(message(big) == "runtime: 262145 bytes, more than the limit of 262144 bytes (256 KiB)")
        #expect(message([0x1B, 0x4C, 0x75, 0x61, 0x54]) == "runtime: a precompiled Lua chunk; only Lua source is accepted")
        #expect(message(Array("-- ok\n".utf8) + [0xC3, 0x28]) == "runtime: not valid UTF-8 at byte 7")
        #expect(message(Array("x = 'é'".utf8)) == nil)
        #expect(message([UInt8](repeating: UInt8(ascii: "-"), count: 256 * 1024)) == nil)
    }
}

/// The two variants of the default runtime.
@Suite struct DefaultRuntimeTests {
    @Test func variantsDifferOnlyInTheExecuteCheck() {
        let good = DefaultRuntime.source.split(separator: "\n", omittingEmptySubsequences: false)
        let bad = DefaultRuntime.latentBugSource.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(good.count == bad.count)
        let differing = zip(good, bad).filter { $0 != $1 }
        #expect(differing.count == 2)
        #expect(differing.last.map { $0.0.contains("rule_result.execute ~= nil") } == true)
        #expect(!DefaultRuntime.source.contains("--@"))
        #expect(DefaultRuntime.source.contains("function on_request(req, rules)"))
    }
}
