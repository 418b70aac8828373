/// The runtime that ships with bulkhead: the rules engine, as the Lua text a worker
/// loads with `PlatformRuntime` (chunk name `runtime.lua`) when no runtime artifact
/// has been rolled out.
///
/// It defines `on_request(req, rules)`, which evaluates `rules.rules` in order and
/// returns nil (pass) or `{ action = "block", status = …, body = … }`:
/// - a rule applies when every matcher of its `when` holds: `method` (a string or a
///   list), `path_prefix`, `header` (`name` with `equals`, `contains` or `present`;
///   names compared in lower case), `query` (`contains` on the raw query string, or
///   `param` with `equals` on the percent-decoded parameters);
/// - `block` blocks (status and body from the rule, or the host's defaults);
/// - `log` calls `log("rule ID: MESSAGE (METHOD PATH)")`;
/// - `skip` stops the current list: at the top level the request passes; inside a
///   ruleset, the list that executed it goes on;
/// - `execute` evaluates `rules.rulesets[ruleset]`; a block there blocks the request;
/// - a rule with `killswitch = true` is skipped as if absent.
///
/// A rules file that `RulesValidator` refuses may still reach it (an old worker, a
/// bypassed check): unknown actions, a missing ruleset or nesting deeper than
/// ``maximumDepth`` raise an error — counted as a platform error, the request
/// passes — and malformed matchers never match. It never writes to `req` and checks
/// every optional value for nil before indexing it.
public enum DefaultRuntime {
    /// The deepest `execute` nesting the engine follows (`RulesValidator` refuses
    /// deeper files).
    public static let maximumDepth = 8

    /// The default runtime's Lua source.
    public static let source: String = template.replacing(marker, with: guardedExecute)

    /// The default runtime with the December outage's latent bug put back, for replays
    /// and tests: after a rule is skipped by its killswitch, the engine still reads
    /// `rule_result.execute.results`. Nothing changes until some `execute` rule has
    /// `killswitch: true`; from then on every request that matches that rule throws
    /// `runtime.lua:N: attempt to index a nil value (field 'execute')`. Identical to
    /// ``source`` but for two lines (same line count, so line numbers agree).
    public static let latentBugSource: String = template.replacing(marker, with: unguardedExecute)

    // MARK: Source

    private static let marker = "--@EXECUTE_CHECK@"

    private static let guardedExecute = """
              -- A skipped rule has no `execute`: check it before indexing it.
              if rule_result.action == "execute" and rule_result.execute ~= nil then
        """

    private static let unguardedExecute = """
              -- LATENT BUG (kept for replays): a skipped rule has no `execute`.
              if rule_result.action == "execute" then
        """

    private static let template = #"""
        -- runtime.lua: bulkhead's default platform runtime, the rules engine.
        --
        -- on_request(req, rules) runs before every customer script, in a Lua state of
        -- its own, and returns nil (pass) or { action = "block", status = ..., body = ... }.
        --
        -- rules is the rules artifact decoded from JSON:
        --   { rules = { rule, ... }, rulesets = { NAME = { rule, ... } } }
        --   rule = { id = "r1", when = { ... }, action = "block" | "log" | "skip" | "execute",
        --            status = 403, body = "...", message = "...", ruleset = "NAME",
        --            killswitch = true }
        -- Every matcher given in `when` must hold: method (a string or a list),
        -- path_prefix, header ({ name, equals | contains | present }), query
        -- ({ contains } on the raw query string, or { param, equals } on the
        -- percent-decoded parameters).
        --
        -- `skip` stops the current list: at the top level the request passes; inside a
        -- ruleset the list that executed it goes on. `execute` evaluates the named
        -- ruleset, and a block there blocks the request. A rule whose killswitch is on
        -- is skipped as if it were absent.
        --
        -- Two habits keep this file from failing on the data plane:
        -- * req is read-only: nothing here writes to it.
        -- * every optional value is checked for nil before it is indexed. The rules went
        --   through validation, but the engine does not lean on it: an outage came from
        --   reading `rule_result.execute` after its rule had been skipped.

        local type, tostring, tonumber, error = type, tostring, tonumber, error
        local find, sub, lower, gsub, gmatch, char, format =
          string.find, string.sub, string.lower, string.gsub, string.gmatch, string.char, string.format
        local log = log

        -- How deep `execute` may nest; validation refuses deeper files.
        local MAX_DEPTH = 8

        -- MARK: Matchers

        local function method_matches(want, method)
          if type(want) == "string" then
            return want == method
          end
          if type(want) == "table" then
            for index = 1, #want do
              if want[index] == method then
                return true
              end
            end
          end
          return false
        end

        local function hex_byte(hex)
          return char(tonumber(hex, 16))
        end

        -- One query component, percent-decoded ("+" is a space).
        local function unescape(text)
          text = gsub(text, "%+", " ")
          text = gsub(text, "%%(%x%x)", hex_byte)
          return text
        end

        local function query_has_param(query, name, value)
          for pair in gmatch(query, "[^&]+") do
            local key, found = pair, ""
            local equals = find(pair, "=", 1, true)
            if equals ~= nil then
              key, found = sub(pair, 1, equals - 1), sub(pair, equals + 1)
            end
            if unescape(key) == name and unescape(found) == value then
              return true
            end
          end
          return false
        end

        local function query_matches(matcher, query)
          if type(query) ~= "string" then
            query = ""
          end
          local contains = matcher.contains
          if contains ~= nil then
            return type(contains) == "string" and find(query, contains, 1, true) ~= nil
          end
          local param, equals = matcher.param, matcher.equals
          if type(param) == "string" and type(equals) == "string" then
            return query_has_param(query, param, equals)
          end
          return false
        end

        local function header_matches(matcher, headers)
          local name = matcher.name
          if type(name) ~= "string" then
            return false
          end
          local value = nil
          if type(headers) == "table" then
            value = headers[lower(name)]
          end
          local present = matcher.present
          if present ~= nil then
            return (value ~= nil) == (present == true)
          end
          if type(value) ~= "string" then
            return false
          end
          local equals = matcher.equals
          if equals ~= nil then
            return value == equals
          end
          local contains = matcher.contains
          if type(contains) == "string" then
            return find(value, contains, 1, true) ~= nil
          end
          return false
        end

        -- Whether every matcher of `when` holds for req (no `when`: always).
        local function matches(when, req)
          if when == nil then
            return true
          end
          if type(when) ~= "table" then
            return false
          end
          local method = when.method
          if method ~= nil and not method_matches(method, req.method) then
            return false
          end
          local prefix = when.path_prefix
          if prefix ~= nil then
            local path = req.path
            if type(prefix) ~= "string" or type(path) ~= "string" or sub(path, 1, #prefix) ~= prefix then
              return false
            end
          end
          local header = when.header
          if header ~= nil and not (type(header) == "table" and header_matches(header, req.headers)) then
            return false
          end
          local query = when.query
          if query ~= nil and not (type(query) == "table" and query_matches(query, req.query)) then
            return false
          end
          return true
        end

        -- MARK: Engine

        local evaluate_list

        -- Runs one rule whose `when` held and returns its rule_result:
        --   { id, action, skipped = true }          killswitch on: as if absent
        --   { id, action, verdict = { ... } }       block
        --   { id, action, stop = true }             skip
        --   { id, action }                          log
        --   { id, action, execute = { results } }   execute (results: the ruleset's
        --                                           verdict, or nil)
        local function run_rule(rule, rules, req, depth)
          local action = rule.action
          local rule_result = { id = rule.id, action = action }
          if rule.killswitch == true then
            rule_result.skipped = true
            return rule_result
          end
          if action == "block" then
            rule_result.verdict = { action = "block", status = rule.status, body = rule.body }
          elseif action == "log" then
            local message = rule.message
            if type(message) ~= "string" then
              message = "matched"
            end
            log(format("rule %s: %s (%s %s)", tostring(rule.id), message, tostring(req.method), tostring(req.path)))
          elseif action == "skip" then
            rule_result.stop = true
          elseif action == "execute" then
            local name, rulesets, list = rule.ruleset, rules.rulesets, nil
            if name ~= nil and type(rulesets) == "table" then
              list = rulesets[name]
            end
            if type(list) ~= "table" then
              error(format("rule %s executes ruleset %s, which does not exist", tostring(rule.id), tostring(name)))
            end
            if depth >= MAX_DEPTH then
              error(format("rule %s: rulesets nest deeper than %d", tostring(rule.id), MAX_DEPTH))
            end
            rule_result.execute = { results = evaluate_list(list, rules, req, depth + 1) }
          else
            error(format("rule %s: unknown action %s", tostring(rule.id), tostring(action)))
          end
          return rule_result
        end

        -- Evaluates one list of rules in order; returns a verdict, or nil to pass on.
        evaluate_list = function(list, rules, req, depth)
          for index = 1, #list do
            local rule = list[index]
            if type(rule) == "table" and matches(rule.when, req) then
              local rule_result = run_rule(rule, rules, req, depth)
        --@EXECUTE_CHECK@
                local verdict = rule_result.execute.results
                if verdict ~= nil then
                  return verdict
                end
              elseif rule_result.verdict ~= nil then
                return rule_result.verdict
              elseif rule_result.stop then
                return nil
              end
            end
          end
          return nil
        end

        function on_request(req, rules)
          if type(req) ~= "table" or type(rules) ~= "table" then
            return nil
          end
          local list = rules.rules
          if type(list) ~= "table" then
            return nil
          end
          return evaluate_list(list, rules, req, 0)
        end
        """#
}
