import Foundation

/// What a rules file that passed ``RulesValidator`` holds.
public struct RulesSummary: Sendable, Equatable {
    /// Rules in all: the top-level list plus every ruleset.
    public var ruleCount: Int
    /// Rules in the top-level list.
    public var topLevelRuleCount: Int
    /// Rulesets defined.
    public var rulesetCount: Int
    /// The deepest chain of `execute` (0 when no ruleset exists; 1 when rulesets
    /// execute no other ruleset).
    public var depth: Int
    /// Rules whose killswitch is on.
    public var killswitchCount: Int
    /// Size of the file in bytes.
    public var byteCount: Int

    /// A summary with every field given.
    public init(ruleCount: Int, topLevelRuleCount: Int, rulesetCount: Int, depth: Int, killswitchCount: Int, byteCount: Int) {
        self.ruleCount = ruleCount
        self.topLevelRuleCount = topLevelRuleCount
        self.rulesetCount = rulesetCount
        self.depth = depth
        self.killswitchCount = killswitchCount
        self.byteCount = byteCount
    }
}

/// Checks a rules artifact before any pool gets it (the supervisor) and again
/// before a worker loads it (defence in depth): strict JSON, the schema, and the
/// limits the consumer — the platform runtime — declares.
///
/// The file:
/// ```json
/// {"rules": [RULE, ...], "rulesets": {"NAME": [RULE, ...]}}
/// ```
/// A RULE is an object with `id` (a non-empty string, unique in the file), optional
/// `when` (`method`: a name or a list of names in upper case; `path_prefix`: a
/// string starting with `/`; `header`: `{"name": …}` with exactly one of `equals`
/// (string), `contains` (string), `present` (boolean); `query`: `{"contains": …}` or
/// `{"param": …, "equals": …}`), `action` (`block`, `log`, `skip`, `execute`),
/// `status` (200–599: a block is a final answer, never an interim 1xx) and `body` (string) for `block` only, `message` (string) for
/// `log` only, `ruleset` (a defined ruleset) for `execute` only and required there,
/// and optional `killswitch` (boolean). No other key is accepted anywhere.
///
/// Pure: no I/O, no Lua.
public enum RulesValidator {
    /// The largest rules file, in bytes (256 KiB).
    public static let maximumBytes = 256 * 1024
    /// The most rules in all, top level and every ruleset together. (The November
    /// 2025 outage was a feature file that outgrew a hard-coded limit of 200.)
    public static let maximumRules = 200
    /// The most rulesets.
    public static let maximumRulesets = 32
    /// The deepest chain of `execute`: top level → ruleset → … at most this many
    /// rulesets deep. The default runtime follows no deeper.
    public static let maximumDepth = 8
    /// The actions a rule may have, in the order messages list them.
    public static let actions = ["block", "log", "skip", "execute"]

    /// Checks `data` and summarises it, or says what is wrong with it (the first
    /// problem found, checked in this order: size, JSON, the top level, the counts,
    /// each rule in file order (top level, then rulesets by name), ids, `execute`
    /// targets, loops, depth).
    public static func validate(_ data: [UInt8]) -> Result<RulesSummary, RulesError> {
        do throws(RulesError) {
            return .success(try check(data))
        } catch {
            return .failure(error)
        }
    }

    /// Why `data` is refused (the ``RulesError`` message), or nil when it is valid.
    /// Shaped for `PlatformRuntime.loadRules(_:validatedBy:)`.
    public static func refusal(_ data: [UInt8]) -> String? {
        if case .failure(let error) = validate(data) {
            return error.message
        }
        return nil
    }

    // MARK: Whole file

    private static func check(_ data: [UInt8]) throws(RulesError) -> RulesSummary {
        guard data.count <= maximumBytes else {
            throw RulesError(.tooLarge, "rules: \(data.count) bytes, more than the limit of \(maximumBytes) bytes (256 KiB)")
        }
        let root = try RulesJSON.parse(data)
        guard case .object(let top) = root else {
            throw RulesError(.schema, #"rules: the top level must be an object {"rules": [...], "rulesets": {...}}, got "# + root.described)
        }
        try refuseUnknownKeys(top, known: ["rules", "rulesets"], where: "rules: unknown key %@ at the top level")

        guard let rulesValue = top["rules"] else {
            throw RulesError(.schema, #"rules: missing "rules", the list of rules"#)
        }
        guard case .array(let topRules) = rulesValue else {
            throw RulesError(.schema, #"rules: "rules" must be a list of rules, got "# + rulesValue.described)
        }
        var rulesets: [(name: String, rules: [RulesJSON])] = []
        if let rulesetsValue = top["rulesets"] {
            guard case .object(let byName) = rulesetsValue else {
                throw RulesError(.schema, #"rules: "rulesets" must be an object of NAME: [rules], got "# + rulesetsValue.described)
            }
            for name in byName.keys.sorted() {
                guard !name.isEmpty else {
                    throw RulesError(.schema, "rules: a ruleset name must not be empty")
                }
                guard case .array(let list) = byName[name] ?? .null else {
                    throw RulesError(.schema, "ruleset \(quoted(name)): must be a list of rules, got \((byName[name] ?? .null).described)")
                }
                rulesets.append((name, list))
            }
        }

        // The counts come before any rule's details: a file over a limit is refused
        // for that, whatever else is wrong with it.
        let total = topRules.count + rulesets.reduce(0) { $0 + $1.rules.count }
        guard total <= maximumRules else {
            let split = rulesets.isEmpty ? "" : " (\(topRules.count) at the top level, \(total - topRules.count) in \(rulesets.count) rulesets)"
            throw RulesError(.tooManyRules, "rules: \(total) rules, more than the limit of \(maximumRules)\(split)")
        }
        guard rulesets.count <= maximumRulesets else {
            throw RulesError(.tooManyRulesets, "rules: \(rulesets.count) rulesets, more than the limit of \(maximumRulesets)")
        }

        // Every rule, in file order.
        var checked: [CheckedRule] = []
        checked.reserveCapacity(total)
        for (index, value) in topRules.enumerated() {
            checked.append(try checkRule(value, at: "rules[\(index)]", in: nil))
        }
        for ruleset in rulesets {
            for (index, value) in ruleset.rules.enumerated() {
                checked.append(try checkRule(value, at: "rulesets.\(ruleset.name)[\(index)]", in: ruleset.name))
            }
        }

        var firstPlace: [String: String] = [:]
        for rule in checked {
            if let earlier = firstPlace[rule.id] {
                throw RulesError(.duplicateID, "rule \(quoted(rule.id)): id used twice (\(earlier) and \(rule.location))")
            }
            firstPlace[rule.id] = rule.location
        }

        // The execute graph: ruleset -> rulesets it executes (in rule order).
        let defined = Set(rulesets.map(\.name))
        var edges: [String: [String]] = [:]
        for name in defined {
            edges[name] = []
        }
        for rule in checked {
            guard let target = rule.executes else { continue }
            guard defined.contains(target) else {
                let list = defined.isEmpty ? "no ruleset is defined" : "defined: " + defined.sorted().joined(separator: ", ")
                throw RulesError(.unknownRuleset, "rule \(quoted(rule.id)): executes ruleset \(quoted(target)), which is not defined (\(list))")
            }
            if let from = rule.ruleset, edges[from]?.contains(target) == false {
                edges[from, default: []].append(target)
            }
        }
        if let cycle = findCycle(edges) {
            if cycle.count == 2 {
                throw RulesError(.cycle, "ruleset \(cycle[0]) executes itself in a loop (\(cycle[0]) → \(cycle[0]))")
            }
            throw RulesError(.cycle, "rulesets \(cycle.joined(separator: " → ")) execute each other in a loop")
        }
        let deepest = longestChain(edges)
        guard deepest.count <= maximumDepth else {
            throw RulesError(.tooDeep, "rules: execute nests \(deepest.count) rulesets deep (\(deepest.joined(separator: " → "))), more than the limit of \(maximumDepth)")
        }

        return RulesSummary(
            ruleCount: total,
            topLevelRuleCount: topRules.count,
            rulesetCount: rulesets.count,
            depth: deepest.count,
            killswitchCount: checked.filter(\.killswitch).count,
            byteCount: data.count
        )
    }

    // MARK: One rule

    /// What the whole-file checks need of one rule.
    private struct CheckedRule {
        var id: String
        /// `rules[3]`, `rulesets.a[0]`.
        var location: String
        /// The ruleset holding the rule; nil at the top level.
        var ruleset: String?
        /// The ruleset an `execute` rule names.
        var executes: String?
        var killswitch: Bool
    }

    private static let ruleKeys: Set<String> = ["id", "when", "action", "status", "body", "message", "ruleset", "killswitch"]
    /// The keys allowed with one action only.
    private static let actionKeys: [(key: String, action: String)] = [
        ("status", "block"), ("body", "block"), ("message", "log"), ("ruleset", "execute"),
    ]

    private static func checkRule(_ value: RulesJSON, at location: String, in ruleset: String?) throws(RulesError) -> CheckedRule {
        guard case .object(let fields) = value else {
            throw RulesError(.schema, "\(location): a rule must be an object, got \(value.described)")
        }
        // The id first, so that every later message can name the rule by it.
        guard let idValue = fields["id"] else {
            throw RulesError(.schema, #"\#(location): missing "id""#)
        }
        guard case .string(let id) = idValue else {
            throw RulesError(.schema, #"\#(location): "id" must be a string, got \#(idValue.described)"#)
        }
        guard !id.isEmpty else {
            throw RulesError(.schema, #"\#(location): "id" must not be empty"#)
        }
        let rule = "rule \(quoted(id))"
        try refuseUnknownKeys(fields, known: ruleKeys, where: "\(rule): unknown key %@")

        let actionList = actions.joined(separator: ", ")
        guard let actionValue = fields["action"] else {
            throw RulesError(.schema, #"\#(rule): missing "action" (one of \#(actionList))"#)
        }
        guard case .string(let action) = actionValue else {
            throw RulesError(.schema, #"\#(rule): "action" must be a string, got \#(actionValue.described)"#)
        }
        guard actions.contains(action) else {
            throw RulesError(.schema, "\(rule): action \(quoted(action)) is not one of \(actionList)")
        }
        for (key, owner) in actionKeys where fields[key] != nil && action != owner {
            throw RulesError(.schema, #"\#(rule): "\#(key)" is only for action "\#(owner)", not "\#(action)""#)
        }

        if let status = fields["status"] {
            guard let code = status.integer, (200...599).contains(code) else {
                throw RulesError(.schema, #"\#(rule): "status" must be an integer from 200 to 599, got \#(status.described)"#)
            }
        }
        for key in ["body", "message"] {
            if let text = fields[key], text.string == nil {
                throw RulesError(.schema, #"\#(rule): "\#(key)" must be a string, got \#(text.described)"#)
            }
        }
        var executes: String?
        if action == "execute" {
            guard let target = fields["ruleset"] else {
                throw RulesError(.schema, #"\#(rule): action "execute" needs "ruleset", the name of the ruleset to evaluate"#)
            }
            guard let name = target.string, !name.isEmpty else {
                throw RulesError(.schema, #"\#(rule): "ruleset" must be the name of a ruleset, got \#(target.described)"#)
            }
            executes = name
        }
        var killswitch = false
        if let value = fields["killswitch"] {
            guard case .bool(let on) = value else {
                throw RulesError(.schema, #"\#(rule): "killswitch" must be true or false, got \#(value.described)"#)
            }
            killswitch = on
        }
        if let when = fields["when"] {
            try checkWhen(when, rule: rule)
        }
        return CheckedRule(id: id, location: location, ruleset: ruleset, executes: executes, killswitch: killswitch)
    }

    private static func checkWhen(_ when: RulesJSON, rule: String) throws(RulesError) {
        guard case .object(let matchers) = when else {
            throw RulesError(.schema, #"\#(rule): "when" must be an object of matchers, got \#(when.described)"#)
        }
        try refuseUnknownKeys(matchers, known: ["method", "path_prefix", "header", "query"], where: "\(rule): unknown matcher %@ in \"when\"")

        if let method = matchers["method"] {
            let names: [RulesJSON]
            switch method {
            case .string: names = [method]
            case .array(let list) where !list.isEmpty: names = list
            default:
                throw RulesError(.schema, #"\#(rule): "when.method" must be a method or a non-empty list of methods, got \#(method.described)"#)
            }
            for name in names {
                guard let text = name.string, !text.isEmpty, text.utf8.allSatisfy(isTokenByte) else {
                    throw RulesError(.schema, #"\#(rule): "when.method" must name HTTP methods (GET, POST, …), got \#(name.described)"#)
                }
                guard text.uppercased() == text else {
                    throw RulesError(.schema, #"\#(rule): method \#(quoted(text)) never matches: methods are case-sensitive, write \#(quoted(text.uppercased()))"#)
                }
            }
        }
        if let prefix = matchers["path_prefix"] {
            guard let text = prefix.string, text.hasPrefix("/") else {
                throw RulesError(.schema, #"\#(rule): "when.path_prefix" must be a string starting with "/", got \#(prefix.described)"#)
            }
        }
        if let header = matchers["header"] {
            guard case .object(let fields) = header else {
                throw RulesError(.schema, #"\#(rule): "when.header" must be an object {"name": …, "equals" | "contains" | "present": …}, got \#(header.described)"#)
            }
            try refuseUnknownKeys(fields, known: ["name", "equals", "contains", "present"], where: "\(rule): unknown key %@ in \"when.header\"")
            guard let name = fields["name"]?.string, !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw RulesError(.schema, #"\#(rule): "when.header" needs "name", a header name, got \#(fields["name"]?.described ?? "none")"#)
            }
            let tests = ["equals", "contains", "present"].filter { fields[$0] != nil }
            guard tests.count == 1 else {
                throw RulesError(.schema, #"\#(rule): "when.header" needs exactly one of "equals", "contains", "present", got \#(tests.isEmpty ? "none" : tests.joined(separator: ", "))"#)
            }
            let test = tests[0]
            let operand = fields[test] ?? .null
            if test == "present" {
                guard case .bool = operand else {
                    throw RulesError(.schema, #"\#(rule): "when.header.present" must be true or false, got \#(operand.described)"#)
                }
            } else if operand.string == nil {
                throw RulesError(.schema, #"\#(rule): "when.header.\#(test)" must be a string, got \#(operand.described)"#)
            }
        }
        if let query = matchers["query"] {
            guard case .object(let fields) = query else {
                throw RulesError(.schema, #"\#(rule): "when.query" must be an object {"contains": …} or {"param": …, "equals": …}, got \#(query.described)"#)
            }
            try refuseUnknownKeys(fields, known: ["contains", "param", "equals"], where: "\(rule): unknown key %@ in \"when.query\"")
            let shape = Set(fields.keys)
            if shape == ["contains"] {
                guard fields["contains"]?.string != nil else {
                    throw RulesError(.schema, #"\#(rule): "when.query.contains" must be a string, got \#(fields["contains"]?.described ?? "none")"#)
                }
            } else if shape == ["param", "equals"] {
                guard let param = fields["param"]?.string, !param.isEmpty else {
                    throw RulesError(.schema, #"\#(rule): "when.query.param" must be a parameter name, got \#(fields["param"]?.described ?? "none")"#)
                }
                guard fields["equals"]?.string != nil else {
                    throw RulesError(.schema, #"\#(rule): "when.query.equals" must be a string, got \#(fields["equals"]?.described ?? "none")"#)
                }
            } else {
                throw RulesError(.schema, #"\#(rule): "when.query" needs either "contains", or "param" with "equals""#)
            }
        }
    }

    // MARK: Rulesets

    /// The first loop found, as its path with the first name repeated at the end
    /// (`[a, b, a]`; `[a, a]` for a ruleset that executes itself), or nil.
    /// Deterministic: rulesets are visited by name.
    private static func findCycle(_ edges: [String: [String]]) -> [String]? {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var path: [String] = []

        func visit(_ node: String) -> [String]? {
            marks[node] = .visiting
            path.append(node)
            for next in edges[node] ?? [] {
                switch marks[next] {
                case .visiting?:
                    let start = path.lastIndex(of: next) ?? 0
                    return Array(path[start...]) + [next]
                case .done?:
                    continue
                case nil:
                    if let cycle = visit(next) {
                        return cycle
                    }
                }
            }
            path.removeLast()
            marks[node] = .done
            return nil
        }

        for node in edges.keys.sorted() where marks[node] == nil {
            if let cycle = visit(node) {
                return cycle
            }
        }
        return nil
    }

    /// The longest chain of rulesets executing one another (the graph has no loop),
    /// as the list of its rulesets; empty when there is no ruleset. Rulesets no rule
    /// reaches count too: the chain they would start is refused before a rule starts
    /// reaching it.
    private static func longestChain(_ edges: [String: [String]]) -> [String] {
        var memo: [String: [String]] = [:]

        func chain(from node: String) -> [String] {
            if let known = memo[node] {
                return known
            }
            var best: [String] = []
            for next in edges[node] ?? [] {
                let candidate = chain(from: next)
                if candidate.count > best.count {
                    best = candidate
                }
            }
            let result = [node] + best
            memo[node] = result
            return result
        }

        var longest: [String] = []
        for node in edges.keys.sorted() {
            let candidate = chain(from: node)
            if candidate.count > longest.count {
                longest = candidate
            }
        }
        return longest
    }

    // MARK: Helpers

    /// Throws for the first key of `object` (by name) not in `known`; `template`
    /// holds `%@` where the key goes.
    private static func refuseUnknownKeys(_ object: [String: RulesJSON], known: Set<String>, where template: String) throws(RulesError) {
        guard let unknown = object.keys.sorted().first(where: { !known.contains($0) }) else { return }
        let message = template.replacingOccurrences(of: "%@", with: quoted(unknown))
        throw RulesError(.schema, "\(message) (known: \(known.sorted().joined(separator: ", ")))")
    }

    /// `"text"` with quotes and escapes, so that odd ids stay readable on one line.
    static func quoted(_ text: String) -> String {
        text.debugDescription
    }

    /// RFC 9110 token characters (method and header names).
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

// MARK: - JSON

/// A JSON value with booleans and numbers told apart (Foundation's parser gives
/// `NSNumber` for both).
enum RulesJSON {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([RulesJSON])
    case object([String: RulesJSON])

    /// Parses `data` with Foundation's parser, after checking it is strict JSON as the
    /// workers' decoder reads it.
    static func parse(_ data: [UInt8]) throws(RulesError) -> RulesJSON {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(data), options: [.fragmentsAllowed])
        } catch {
            let detail = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
            throw RulesError(.notJSON, "rules: not valid JSON: \(detail)")
        }
        if let problem = strictProblem(data) {
            throw RulesError(.notJSON, "rules: not valid JSON: \(problem)")
        }
        return RulesJSON(object)
    }

    init(_ value: Any) {
        if let number = value as? NSNumber, !(value is String) {
            switch String(cString: number.objCType) {
            case "c", "B":
                self = .bool(number.boolValue)
            case "d", "f", "Q":
                let double = number.doubleValue
                if let exact = Int(exactly: double) {
                    self = .integer(exact)
                } else {
                    self = .number(double)
                }
            default:
                self = .integer(number.intValue)
            }
        } else if let string = value as? String {
            self = .string(string)
        } else if let array = value as? [Any] {
            self = .array(array.map(RulesJSON.init))
        } else if let object = value as? [String: Any] {
            self = .object(object.mapValues(RulesJSON.init))
        } else {
            self = .null
        }
    }

    /// What Foundation's parser accepts but the workers' strict decoder refuses — a
    /// trailing comma, a byte order mark — and a key given twice in one object
    /// (both parsers keep the last one, but a rule with two `action`s is a mistake
    /// to refuse, not to guess at). Runs on text Foundation already parsed, so the
    /// structure is sound. Keys are compared as written (escapes not decoded).
    static func strictProblem(_ bytes: [UInt8]) -> String? {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            return "a byte order mark at the start (save the file as UTF-8 without one)"
        }
        // One entry per open object or array: its keys so far (objects only) and
        // whether the next string in it is a key.
        var isObject: [Bool] = []
        var keys: [Set<ArraySlice<UInt8>>] = []
        var expectingKey: [Bool] = []
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                var end = index + 1
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
                    end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1
                }
                if isObject.last == true, expectingKey.last == true {
                    let key = bytes[(index + 1)..<min(end, bytes.count)]
                    let top = keys.count - 1
                    if !keys[top].insert(key).inserted {
                        return "the key \(RulesValidator.quoted(String(decoding: key, as: UTF8.self))) appears twice in one object (at byte \(index + 1))"
                    }
                    expectingKey[top] = false
                }
                index = end + 1
                continue
            case UInt8(ascii: "{"):
                isObject.append(true)
                keys.append([])
                expectingKey.append(true)
            case UInt8(ascii: "["):
                isObject.append(false)
                keys.append([])
                expectingKey.append(false)
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = isObject.popLast()
                _ = keys.popLast()
                _ = expectingKey.popLast()
            case UInt8(ascii: ","):
                var next = index + 1
                while next < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[next]) {
                    next += 1
                }
                if next < bytes.count, bytes[next] == UInt8(ascii: "}") || bytes[next] == UInt8(ascii: "]") {
                    return "a trailing comma at byte \(index + 1)"
                }
                if isObject.last == true {
                    expectingKey[expectingKey.count - 1] = true
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }

    /// `a string`, `a list`, `true`, `7`: for messages.
    var described: String {
        switch self {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .integer(let value): String(value)
        case .number(let value): String(value)
        case .string(let value): "the string \(RulesValidator.quoted(String(value.prefix(40))))"
        case .array: "a list"
        case .object: "an object"
        }
    }

    var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    var integer: Int? {
        if case .integer(let value) = self { value } else { nil }
    }
}
