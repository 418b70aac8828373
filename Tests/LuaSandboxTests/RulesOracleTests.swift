import BulkheadCore
import Foundation
import LuaSandbox
import SeededRandom
import Testing

/// The rules engine against a reference written here from the rules contract
/// (DefaultRuntime's documentation): random rule sets and requests, the same verdict
/// and the same log lines in the same order, or the test names the seed, the rules
/// and the request. The engine generates Lua from the rules; the reference reads them
/// one by one, the plain way.
@Suite struct RulesOracleTests {
    // MARK: The rules, as the reference holds them

    enum HeaderTest {
        case present(Bool)
        case equals(String)
        case contains(String)
    }

    enum QueryTest {
        case contains(String)
        case param(String, String)
    }

    enum Action {
        case block(status: Int?, body: String?)
        case log
        case skip
        case execute(String)
    }

    struct Rule {
        var id: String
        var methods: [String]?
        var prefix: String?
        var header: (name: String, test: HeaderTest)?
        var query: QueryTest?
        var action: Action
        var killswitch: Bool

        var json: [String: Any] {
            var when: [String: Any] = [:]
            if let methods { when["method"] = methods.count == 1 ? methods[0] as Any : methods as Any }
            if let prefix { when["path_prefix"] = prefix }
            if let header {
                switch header.test {
                case .present(let present): when["header"] = ["name": header.name, "present": present]
                case .equals(let value): when["header"] = ["name": header.name, "equals": value]
                case .contains(let value): when["header"] = ["name": header.name, "contains": value]
                }
            }
            if let query {
                switch query {
                case .contains(let text): when["query"] = ["contains": text]
                case .param(let name, let value): when["query"] = ["param": name, "equals": value]
                }
            }
            var rule: [String: Any] = ["id": id, "when": when]
            switch action {
            case .block(let status, let body):
                rule["action"] = "block"
                if let status { rule["status"] = status }
                if let body { rule["body"] = body }
            case .log:
                rule["action"] = "log"
                rule["message"] = "seen by \(id)"
            case .skip:
                rule["action"] = "skip"
            case .execute(let name):
                rule["action"] = "execute"
                rule["ruleset"] = name
            }
            if killswitch { rule["killswitch"] = true }
            return rule
        }
    }

    struct Request: CustomStringConvertible {
        var method: String
        var path: String
        var query: String
        var headers: [(String, String)]

        var description: String {
            "\(method) \(path)?\(query) \(headers.map { "\($0.0): \($0.1)" }.joined(separator: ", "))"
        }
    }

    // MARK: The reference

    static func decode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), let high = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex),
                      high < utf8.endIndex, let low = utf8.index(high, offsetBy: 1, limitedBy: utf8.endIndex), low < utf8.endIndex,
                      let value = UInt8(String(decoding: [utf8[high], utf8[low]], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index = low
            } else {
                bytes.append(byte)
            }
            index = utf8.index(after: index)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func applies(_ rule: Rule, to request: Request) -> Bool {
        if let methods = rule.methods, !methods.contains(request.method) { return false }
        if let prefix = rule.prefix, !request.path.hasPrefix(prefix) { return false }
        if let header = rule.header {
            let value = request.headers.first { $0.0.lowercased() == header.name.lowercased() }?.1
            switch header.test {
            case .present(let present): if (value != nil) != present { return false }
            case .equals(let expected): if value != expected { return false }
            case .contains(let text):
                guard let value, text.isEmpty || value.contains(text) else { return false }
            }
        }
        if let query = rule.query {
            switch query {
            case .contains(let text):
                if !text.isEmpty && !request.query.contains(text) { return false }
            case .param(let name, let expected):
                let pairs = request.query.split(separator: "&").map { pair -> (String, String) in
                    guard let equals = pair.firstIndex(of: "=") else { return (decode(pair), "") }
                    return (decode(pair[..<equals]), decode(pair[pair.index(after: equals)...]))
                }
                if !pairs.contains(where: { $0.0 == name && $0.1 == expected }) { return false }
            }
        }
        return true
    }

    enum Verdict: Equatable {
        case pass
        case block(Int, String)
    }

    /// nil: go on with the caller's list (nothing blocked; a skip ends this list only).
    static func evaluate(_ list: [Rule], _ rulesets: [String: [Rule]], _ request: Request, logs: inout [String]) -> Verdict? {
        for rule in list where !rule.killswitch && applies(rule, to: request) {
            switch rule.action {
            case .block(let status, let body):
                return .block(status ?? 403, body ?? "blocked by a rule\n")
            case .log:
                logs.append("rule \(rule.id): seen by \(rule.id) (\(request.method) \(request.path))")
            case .skip:
                return nil
            case .execute(let name):
                if let verdict = evaluate(rulesets[name] ?? [], rulesets, request, logs: &logs) {
                    return verdict
                }
            }
        }
        return nil
    }

    // MARK: Random rules and requests

    static let methods = ["GET", "POST", "DELETE", "TRACE"]
    static let paths = ["/", "/admin", "/admin/users", "/api/v1", "/api", "/.git/config", "/public/a.css", "/wp-admin/x",
                        "/static/admin", "/v2/api/x", "/ad"]
    static let prefixes = ["/admin", "/api/", "/api", "/.git", "/wp-admin", "/", "/public/a.css", "/nothing-here-at-all"]
    static let queries = ["", "a=1", "debug=1", "debug=%31", "q=union+select", "a=x+y&debug=0", "debug"]
    static let headerNames = ["user-agent", "x-api-key", "x-probe"]
    static let headerValues = ["sqlmap/1.5", "curl/8", "key-1", "1"]

    static func randomRule(_ random: inout SplitMix64, id: String, rulesets: [String]) -> Rule {
        var rule = Rule(id: id, action: .log, killswitch: random.chance(10))
        if random.chance(30) { rule.methods = (0..<(1 + random.below(2))).map { _ in random.pick(methods) } }
        if random.chance(40) { rule.prefix = random.pick(prefixes) }
        if random.chance(35) {
            let name = random.pick(headerNames)
            let shown = random.chance(20) ? name.uppercased() : name
            switch random.below(3) {
            case 0: rule.header = (shown, .present(random.chance(60)))
            case 1: rule.header = (shown, .equals(random.pick(headerValues)))
            default: rule.header = (shown, .contains(random.pick(["sqlmap", "curl", "key", "", "1"])))
            }
        }
        if random.chance(30) {
            rule.query = random.chance(50)
                ? .contains(random.pick(["union+select", "debug", "=1", ""]))
                : .param(random.pick(["debug", "a", "q"]), random.pick(["1", "0", "x y", "union select", ""]))
        }
        switch random.below(10) {
        case 0...5: rule.action = .block(status: random.chance(50) ? random.pick([401, 404, 405, 429]) : nil,
                                          body: random.chance(30) ? "no \(id)\n" : nil)
        case 6: rule.action = .log
        case 7: rule.action = .skip
        default: rule.action = rulesets.isEmpty ? .log : .execute(random.pick(rulesets))
        }
        return rule
    }

    static func randomRequest(_ random: inout SplitMix64) -> Request {
        var headers: [(String, String)] = []
        for name in headerNames where random.chance(40) {
            headers.append((random.chance(30) ? name.uppercased() : name, random.pick(headerValues)))
        }
        return Request(method: random.pick(methods), path: random.pick(paths), query: random.pick(queries), headers: headers)
    }

    // MARK: The test

    @Test func engineAgreesWithTheReference() throws {
        let seed: UInt64 = 20261206
        var random = SplitMix64(seed: seed)
        let sets = 300
        var compared = 0
        for setIndex in 0..<sets {
            // Two rulesets that execute nothing further, then the top-level list.
            var rulesets: [String: [Rule]] = [:]
            for name in ["s1", "s2"] {
                rulesets[name] = (0..<random.below(5)).map { Self.randomRule(&random, id: "\(name)-\($0)", rulesets: []) }
            }
            let top = (0..<(1 + random.below(14))).map { Self.randomRule(&random, id: "r\($0)", rulesets: ["s1", "s2"]) }
            let document: [String: Any] = [
                "rules": top.map(\.json),
                "rulesets": rulesets.mapValues { $0.map(\.json) },
            ]
            let json = String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]), as: UTF8.self)
            let logs = Recorder<String>()
            let runtime = try defaultRuntime(rules: json, logs: logs)
            for _ in 0..<12 {
                let request = Self.randomRequest(&random)
                var expectedLogs: [String] = []
                let expected = Self.evaluate(top, rulesets, request, logs: &expectedLogs) ?? .pass
                let before = logs.values.count
                let outcome = runtime.check(request.method, request.path, query: request.query, headers: request.headers)
                let got: Verdict? = switch outcome {
                case .pass: .pass
                case .block(let status, let body): .block(status, body)
                case .failed: nil
                }
                let gotLogs = Array(logs.values.dropFirst(before))
                #expect(got == expected && gotLogs == expectedLogs,
                        "seed \(seed), set \(setIndex): \(request) → \(outcome), logs \(gotLogs); reference \(expected), logs \(expectedLogs); rules \(json)")
                compared += 1
            }
        }
        print("RulesOracleTests: \(compared) requests against \(sets) random rule sets agree with the reference")
    }
}
