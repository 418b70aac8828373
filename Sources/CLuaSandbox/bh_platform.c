// The platform runtime's calls: loading the rules artifact into the runtime's state,
// and `on_request(req, rules)` with its verdict converted in the same protected call.

#include "bh_internal.h"

#include <stdio.h>
#include <string.h>

/// The registry key of the current rules table (its address is the key).
static const char bh_rules_key = 0;

/// The status of a block that gives none (the runtime contract: 403 when absent).
#define BH_DEFAULT_BLOCK_STATUS 403

// MARK: - Rules

typedef struct bh_rules_args {
    const char *json;
    size_t len;
} bh_rules_args;

/// Raises the formatted message as it is: rules errors are not the runtime's, so
/// they carry no chunk name (bh_platform_set_rules adds "rules: ").
static BH_NORETURN bh_rules_fail(lua_State *L, const char *format, const char *detail) {
    lua_pushfstring(L, format, detail);
    lua_error(L);
    BH_UNREACHABLE();
}

/// What JSON gave at `idx`, for messages ("a string", "null").
static const char *bh_json_kind(lua_State *L, int idx) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: return "a string";
    case LUA_TNUMBER: return "a number";
    case LUA_TBOOLEAN: return "a boolean";
    case LUA_TLIGHTUSERDATA: return "null";  // json.null
    default: return luaL_typename(L, idx);
    }
}

static int bh_rules_body(lua_State *L) {
    const bh_rules_args *args = (const bh_rules_args *)lua_touserdata(L, 1);
    lua_settop(L, 0);
    // A json library of our own, not the runtime's global `json`: the runtime may
    // have replaced that one.
    bh_push_json(L);                                         // [json]
    lua_pushliteral(L, "decode");
    lua_rawget(L, 1);                                        // [json, decode]
    lua_pushlstring(L, args->len != 0 ? args->json : "", args->len); // [json, decode, text]
    lua_call(L, 1, 1);                                       // [json, rules]
    if (lua_type(L, -1) != LUA_TTABLE) {
        bh_rules_fail(L, "the top level must be a JSON object, got %s", bh_json_kind(L, -1));
    }
    // The decoder makes `[]` and `{}` the same empty table; an array at the top is
    // told apart by its first element.
    if (lua_rawlen(L, -1) > 0) {
        bh_rules_fail(L, "the top level must be a JSON object, got %s", "an array");
    }
    return 1;                                                // [rules]
}

/// Makes the table on top the current rules. A protected call of its own, made only
/// once decoding has succeeded with no limit hit, so that a failure of any kind
/// leaves the previous rules in place (the first store adds the registry key, which
/// may allocate).
static int bh_rules_store(lua_State *L) {
    lua_rawsetp(L, LUA_REGISTRYINDEX, &bh_rules_key);        // [rules] -> []
    return 0;
}

bh_outcome bh_platform_set_rules(lua_State *L, const char *json, size_t len) {
    bh_context *ctx = bh_context_of(L);
    bh_rules_args args = {json, len};
    ctx->call_base = lua_gettop(L);
    lua_pushcfunction(L, bh_rules_body);
    lua_pushlightuserdata(L, &args);
    int status = lua_pcall(L, 1, 1, 0);                      // [rules] or [message]
    bh_outcome outcome = bh_finish(L, ctx, status);
    if (outcome == BH_OK) {
        lua_pushcfunction(L, bh_rules_store);                // [rules, store]
        lua_insert(L, -2);                                   // [store, rules]
        status = lua_pcall(L, 1, 0, 0);                      // [] or [message]
        if (status != LUA_OK) {
            outcome = bh_finish(L, ctx, status);
        }
    }
    // Otherwise nothing was stored (an error, or decoded past the deadline): the old
    // rules stay, and bh_call_end pops what is left ([message] or [rules]).
    if (outcome == BH_SCRIPT_ERROR && lua_type(L, -1) == LUA_TSTRING) {
        // bh_finish named the runtime's chunk; the error is the rules' own.
        int n = snprintf(ctx->message, sizeof ctx->message, "rules: %s", lua_tostring(L, -1));
        ctx->error.ptr = ctx->message;
        ctx->error.len = n < 0 ? 0 : ((size_t)n < sizeof ctx->message ? (size_t)n : sizeof ctx->message - 1);
    }
    if (outcome == BH_OK) {
        // The previous rules are garbage now: give their memory back before the next
        // request rather than over the next collection cycles. The sandbox has no
        // finalizers, so no Lua code runs here.
        lua_gc(L, LUA_GCCOLLECT);
    }
    return outcome;
}

// MARK: - on_request

typedef struct bh_platform_args {
    const bh_request *request;
    bh_verdict *verdict;
} bh_platform_args;

/// Reads the result at `idx` into `verdict`, raw access only (no metamethod of the
/// runtime's table runs). The body string stays on the stack as an anchor.
static void bh_convert_verdict(lua_State *L, bh_context *ctx, int idx, bh_verdict *verdict) {
    verdict->block = 0;
    verdict->status = 0;
    verdict->body.ptr = NULL;
    verdict->body.len = 0;
    int type = lua_type(L, idx);
    if (type == LUA_TNIL) {
        return;
    }
    if (type != LUA_TTABLE) {
        bh_fail(L, ctx, "bad verdict from on_request: expected nil or a table, got %s",
                lua_typename(L, type));
    }
    lua_pushliteral(L, "action");
    int action_type = lua_rawget(L, idx);                    // [..., action]
    if (action_type != LUA_TSTRING || strcmp(lua_tostring(L, -1), "block") != 0) {
        bh_fail(L, ctx, "bad verdict from on_request: action must be \"block\" (return nil to pass), got %s",
                action_type == LUA_TSTRING ? lua_tostring(L, -1) : lua_typename(L, action_type));
    }
    lua_pop(L, 1);                                           // [...]

    lua_pushliteral(L, "status");
    int status_type = lua_rawget(L, idx);                    // [..., status]
    if (status_type == LUA_TNIL) {
        verdict->status = BH_DEFAULT_BLOCK_STATUS;
    } else {
        int exact = 0;
        lua_Integer status = lua_tointegerx(L, -1, &exact);
        if (status_type != LUA_TNUMBER || !exact || status < 200 || status > 599) {
            bh_fail(L, ctx, "bad verdict from on_request: status must be an integer from 200 to 599");
        }
        verdict->status = (int)status;
    }
    lua_pop(L, 1);                                           // [...]

    lua_pushliteral(L, "body");
    int body_type = lua_rawget(L, idx);                      // [..., body]
    if (body_type == LUA_TSTRING) {
        verdict->body.ptr = lua_tolstring(L, -1, &verdict->body.len); // anchored: stays
    } else if (body_type != LUA_TNIL) {
        bh_fail(L, ctx, "bad verdict from on_request: body must be a string, got %s",
                lua_typename(L, body_type));
    }
    verdict->block = 1;
}

static int bh_platform_body(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    const bh_platform_args *args = (const bh_platform_args *)lua_touserdata(L, 1);
    lua_settop(L, 0);
    bh_push_required_key(L, ctx, BH_KEY_ON_REQUEST, "on_request(req, rules)"); // [f]
    bh_push_request(L, args->request);                       // [f, req]
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &bh_rules_key) != LUA_TTABLE) { // [f, req, rules]
        // No rules loaded yet: an empty table, so the runtime always gets a table.
        // Kept as the rules until some are loaded, so that every call gets the same
        // table, as it does with loaded rules (a runtime may cache by it).
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);                            // [f, req, {}]
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &bh_rules_key);
    }
    lua_call(L, 2, 1);                                       // [result]
    if (!(ctx->hit & BH_HIT_STOP)) {
        bh_convert_verdict(L, ctx, 1, args->verdict);        // [result, body?]
    }
    // Everything stays as results of the protected call: the body view stays
    // anchored until bh_call_end.
    return lua_gettop(L);
}

bh_outcome bh_platform_call(lua_State *L, const bh_request *request, bh_verdict *verdict) {
    bh_context *ctx = bh_context_of(L);
    bh_platform_args args = {request, verdict};
    verdict->block = 0;
    ctx->call_base = lua_gettop(L);
    lua_pushcfunction(L, bh_platform_body);
    lua_pushlightuserdata(L, &args);
    bh_call_enter(L, ctx);
    int status = lua_pcall(L, 1, LUA_MULTRET, 0);            // [result, body?] or [message]
    return bh_finish(L, ctx, status);
}
