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
///
/// Cost: each rules table is compiled once, on the first request that sees it, into
/// records (lower-cased header names, method sets, ready verdicts) and, per list, one
/// generated Lua function with every rule's checks inlined as constants; a rule that
/// does not apply to a request then costs a few instructions.
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

        local type, tostring, tonumber, error, pairs, setmetatable = type, tostring, tonumber, error, pairs, setmetatable
        local byte, find, sub, lower, gsub, gmatch, char, format = string.byte,
          string.find, string.sub, string.lower, string.gsub, string.gmatch, string.char, string.format
        local concat, load = table.concat, load
        local log = log

        -- How deep `execute` may nest; validation refuses deeper files.
        local MAX_DEPTH = 8

        -- MARK: Compiling the rules

        -- The rules table stays the same between rules changes, so each one is compiled
        -- once, on the first request that sees it, into lists of records holding just what
        -- every request reads, checked and normalised (header names in lower case,
        -- methods as a set, verdicts built). A compiled rule:
        --   { id, action, killswitch (true/false), message, ruleset, verdict,
        --     methods = { GET = true, ... }, prefix, header (lower case), header_present,
        --     header_equals, header_contains, query_contains, query_param, query_equals }
        -- A rule whose `when` is malformed could never match, so it is left out.

        -- Fills the matcher fields of `compiled` from `when`; false when it is malformed.
        local function compile_when(compiled, when)
          if when == nil then
            return true
          end
          if type(when) ~= "table" then
            return false
          end
          local method = when.method
          if method ~= nil then
            local methods = {}
            if type(method) == "string" then
              methods[method] = true
            elseif type(method) == "table" then
              for index = 1, #method do
                if type(method[index]) == "string" then
                  methods[method[index]] = true
                end
              end
            else
              return false
            end
            compiled.methods = methods
          end
          local prefix = when.path_prefix
          if prefix ~= nil then
            if type(prefix) ~= "string" then
              return false
            end
            compiled.prefix = prefix
          end
          local header = when.header
          if header ~= nil then
            if type(header) ~= "table" or type(header.name) ~= "string" then
              return false
            end
            compiled.header = lower(header.name)
            local present, equals, contains = header.present, header.equals, header.contains
            if present ~= nil then
              compiled.header_present = present == true
            elseif type(equals) == "string" then
              compiled.header_equals = equals
            elseif type(contains) == "string" then
              compiled.header_contains = contains
            else
              return false
            end
          end
          local query = when.query
          if query ~= nil then
            if type(query) ~= "table" then
              return false
            end
            local contains, param, equals = query.contains, query.param, query.equals
            if contains ~= nil then
              if type(contains) ~= "string" then
                return false
              end
              compiled.query_contains = contains
            elseif type(param) == "string" and type(equals) == "string" then
              compiled.query_param, compiled.query_equals = param, equals
            else
              return false
            end
          end
          return true
        end

        -- Defined under Matching: the list's matcher, generated from its rules.
        local build_matcher

        local function compile_list(list)
          local out = {}
          for index = 1, #list do
            local rule = list[index]
            if type(rule) == "table" then
              local compiled = {
                id = rule.id, action = rule.action, killswitch = rule.killswitch == true,
                message = rule.message, ruleset = rule.ruleset,
              }
              if rule.action == "block" then
                compiled.verdict = { action = "block", status = rule.status, body = rule.body }
              end
              if compile_when(compiled, rule.when) then
                out[#out + 1] = compiled
              end
            end
          end
          out.next_match = build_matcher(out)
          return out
        end

        -- { rules = compiled list, rulesets = { NAME = compiled list } }
        local function compile(rules)
          local lists = { rules = compile_list({}), rulesets = {} }
          if type(rules.rules) == "table" then
            lists.rules = compile_list(rules.rules)
          end
          local rulesets = rules.rulesets
          if type(rulesets) == "table" then
            for name, list in pairs(rulesets) do
              if type(list) == "table" then
                lists.rulesets[name] = compile_list(list)
              end
            end
          end
          return lists
        end

        -- Compiled lists by rules table; weak keys, so replaced rules go with their lists.
        local compiled_rules = setmetatable({}, { __mode = "k" })

        -- MARK: Matching

        -- The request being evaluated, set by on_request: the engine reads these and never
        -- writes to req.
        local req_method, req_path, req_query, req_headers, req_params = nil, "", "", nil, nil

        local function hex_byte(hex)
          return char(tonumber(hex, 16))
        end

        -- One query component, percent-decoded ("+" is a space). Most have nothing to
        -- decode: one scan instead of two substitutions.
        local function unescape(text)
          if find(text, "[%%+]") == nil then
            return text
          end
          text = gsub(text, "%+", " ")
          text = gsub(text, "%%(%x%x)", hex_byte)
          return text
        end

        -- The parameters of a request without a query; only ever read.
        local no_params = {}

        -- The decoded query parameters, { name = { value = true, ... } }, parsed on the
        -- first rule of a request that asks for them.
        local function query_params()
          if req_params == nil and req_query == "" then
            req_params = no_params  -- Most requests have no query: nothing to parse.
          elseif req_params == nil then
            req_params = {}
            for pair in gmatch(req_query, "[^&]+") do
              local key, value = pair, ""
              local equals = find(pair, "=", 1, true)
              if equals ~= nil then
                key, value = sub(pair, 1, equals - 1), sub(pair, equals + 1)
              end
              key, value = unescape(key), unescape(value)
              local values = req_params[key]
              if values == nil then
                values = {}
                req_params[key] = values
              end
              values[value] = true
            end
          end
          return req_params
        end

        -- Whether the query has parameter `name` with value `value` (decoded).
        local function has_param(name, value)
          local values = query_params()[name]
          return values ~= nil and values[value] ~= nil
        end

        -- The checks of one compiled rule as a Lua expression over m, p, q, h (the
        -- request's method, path, query and headers) and b2 (the path's second byte),
        -- every value a quoted constant, and whether it reads b2;
        -- nil when the rule can never match (a method list with no string in it).
        local function condition(rule)
          local parts = {}
          if rule.methods ~= nil then
            local alternatives = {}
            for method in pairs(rule.methods) do
              alternatives[#alternatives + 1] = "m == " .. format("%q", method)
            end
            if #alternatives == 0 then
              return nil
            end
            parts[#parts + 1] = "(" .. concat(alternatives, " or ") .. ")"
          end
          local prefix, reads_b2 = rule.prefix, false
          if prefix ~= nil and #prefix >= 2 then
            -- b2 is the path's second byte, read once per call: a path that differs
            -- there (most paths, for most prefixes) costs no call to find.
            parts[#parts + 1] = format("b2 == %d and find(p, %q, 1, true) == 1", byte(prefix, 2), prefix)
            reads_b2 = true
          elseif prefix ~= nil then
            parts[#parts + 1] = format("find(p, %q, 1, true) == 1", prefix)
          end
          local header = rule.header
          if header ~= nil then
            local value = format("h[%q]", header)
            if rule.header_present == true then
              parts[#parts + 1] = format("(h ~= nil and %s ~= nil)", value)
            elseif rule.header_present == false then
              parts[#parts + 1] = format("(h == nil or %s == nil)", value)
            elseif rule.header_equals ~= nil then
              parts[#parts + 1] = format("(h ~= nil and %s == %q)", value, rule.header_equals)
            else
              parts[#parts + 1] = format("(h ~= nil and %s ~= nil and find(%s, %q, 1, true) ~= nil)",
                                         value, value, rule.header_contains)
            end
          end
          -- Most requests have no query: the query checks test for that first, without
          -- a call (an empty needle is found in any query, the empty one too).
          if rule.query_contains == "" then
            parts[#parts + 1] = "true"
          elseif rule.query_contains ~= nil then
            parts[#parts + 1] = format("q ~= \"\" and find(q, %q, 1, true) ~= nil", rule.query_contains)
          end
          if rule.query_param ~= nil then
            parts[#parts + 1] = format("q ~= \"\" and has_param(%q, %q)", rule.query_param, rule.query_equals)
          end
          if #parts == 0 then
            return "true", false
          end
          return concat(parts, " and "), reads_b2
        end

        -- The matcher of a compiled list: next_match(from, m, p, q, h) is the position of
        -- the first rule at `from` or later whose `when` holds, or nil. Generated as Lua
        -- text with every rule's checks inlined and loaded once per rules change, so a
        -- rule that does not apply costs a few instructions, not a call and field
        -- reads: 200 rules tested one call each took about 20 us a request.
        build_matcher = function(list)
          local lines = { "local byte, find, has_param = ...", "return function(from, m, p, q, h)", "" }
          for position = 1, #list do
            local test, reads_b2 = condition(list[position])
            if test ~= nil then
              lines[#lines + 1] = format("if from <= %d and %s then return %d end", position, test, position)
              if reads_b2 then
                lines[3] = "local b2 = byte(p, 2)"
              end
            end
          end
          lines[#lines + 1] = "return nil"
          lines[#lines + 1] = "end"
          -- Its own empty environment: the text names only its parameters and upvalues.
          local chunk = assert(load(concat(lines, "\n"), "=rules matcher", "t", {}))
          return chunk(byte, find, has_param)
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
        local function run_rule(rule, lists, depth)
          local action = rule.action
          local rule_result = { id = rule.id, action = action }
          if rule.killswitch then
            rule_result.skipped = true
            return rule_result
          end
          if action == "block" then
            rule_result.verdict = rule.verdict
          elseif action == "log" then
            local message = rule.message
            if type(message) ~= "string" then
              message = "matched"
            end
            log(format("rule %s: %s (%s %s)", tostring(rule.id), message, tostring(req_method), tostring(req_path)))
          elseif action == "skip" then
            rule_result.stop = true
          elseif action == "execute" then
            local name, list = rule.ruleset, nil
            if name ~= nil then
              list = lists.rulesets[name]
            end
            if list == nil then
              error(format("rule %s executes ruleset %s, which does not exist", tostring(rule.id), tostring(name)))
            end
            if depth >= MAX_DEPTH then
              error(format("rule %s: rulesets nest deeper than %d", tostring(rule.id), MAX_DEPTH))
            end
            rule_result.execute = { results = evaluate_list(list, lists, depth + 1) }
          else
            error(format("rule %s: unknown action %s", tostring(rule.id), tostring(action)))
          end
          return rule_result
        end

        -- Evaluates one compiled list in order, rule by rule as its matcher finds them;
        -- returns a verdict, or nil to pass on.
        evaluate_list = function(list, lists, depth)
          local next_match = list.next_match
          local position = next_match(1, req_method, req_path, req_query, req_headers)
          while position ~= nil do
            local rule = list[position]
            do
              local rule_result = run_rule(rule, lists, depth)
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
            position = next_match(position + 1, req_method, req_path, req_query, req_headers)
          end
          return nil
        end

        function on_request(req, rules)
          -- The host passes two tables. Rules already compiled are a table, so the
          -- type checks (two calls) run only until the first request compiles them.
          local lists = compiled_rules[rules]
          if lists == nil then
            if type(req) ~= "table" or type(rules) ~= "table" then
              return nil
            end
            lists = compile(rules)
            compiled_rules[rules] = lists
          end
          req_method, req_path, req_query, req_headers, req_params = req.method, req.path, req.query, req.headers, nil
          if req_path == nil then
            req_path = ""
          end
          if req_query == nil then
            req_query = ""
          end
          local verdict = evaluate_list(lists.rules, lists, 0)
          req_headers, req_params = nil, nil
          return verdict
        end
        """#
}
