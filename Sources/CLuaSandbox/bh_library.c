// The sandbox's global environment: which standard functions a script gets, and
// the C replacements for the ones that would let it escape the limits.
//
// Lua 5.4 runs some code with hooks switched off, where no instruction budget can
// reach it. Each such hole is closed here:
// - `__gc` finalizers run during any GC step and at lua_close: `setmetatable`
//   refuses a metatable with a `__gc` field (Lua only marks an object for
//   finalization when its metatable has `__gc` at the time it is set, so adding the
//   field later does nothing).
// - the message handler of `xpcall` runs with the hooks of the failing code, which
//   are off when the error came from the hook: `xpcall` wraps the handler and skips
//   it once the call is over its instruction or wall limit.
// - `__close` handlers of a coroutine the hook killed run with that dead thread's
//   hooks off when `coroutine.close` or a `coroutine.wrap` function closes it:
//   both refuse (they raise the limit error) while the call is over its limit, and
//   a coroutine that died over a limit is marked (bh_dead_hook) so it is never
//   closed or resumed later either.
//
// And one bug of Lua 5.4.4 that a script could otherwise reach (lua.org bug
// 5.4.4-9, not patched in Debian 12): closes nested inside `__close` handlers are
// not counted in Lua's C-stack limit. See BH_MAX_NESTED_CLOSES.

#include "bh_internal.h"

#include <string.h>

// MARK: - Base library replacements

/// `setmetatable(t, mt)` as in the base library, except that a metatable with a
/// `__gc` field is refused (finalizers run with hooks off).
static int bh_setmetatable(lua_State *L) {
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
        return luaL_error(L, "cannot change a protected metatable");
    }
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox");
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/// The message handler that `xpcall` installs: calls the script's handler (its only
/// upvalue) unless the call is already over its instruction or wall limit, in which
/// case the error passes through untouched — the handler might be running with
/// hooks off, and the call fails with the limit anyway.
static int bh_xpcall_handler(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    if (ctx->hit & BH_HIT_STOP) {
        return 1;
    }
    // [error...] -> [handler, error...] -> [result]
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/// Continuation (and ending) of `xpcall`: on success the results above the first
/// `extra` slots (the slot holding `true` is the first result); on error `false`
/// and the error value.
static int bh_finish_xpcall(lua_State *L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

/// `xpcall(f, msgh, ...)` with the script's handler wrapped by bh_xpcall_handler.
static int bh_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    // [f, msgh, args...]
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, bh_xpcall_handler, 1);
    lua_replace(L, 2);          // [f, wrapper, args...]
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);        // [f, wrapper, args..., true, f]
    lua_rotate(L, 3, 2);        // [f, wrapper, true, f, args...]
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, bh_finish_xpcall);
    return bh_finish_xpcall(L, status, 2);
}

/// `load(chunk [, chunkname [, mode [, env]]])`, kept (rather than removed) because
/// scripts use it for small templates: text only, always mode "t" whatever `mode`
/// says (a binary chunk gets "attempt to load a binary chunk"), strings only (no
/// reader functions), and the script's own sandbox globals as the default
/// environment (the state's global table is the sandbox table).
static int bh_load_lua(lua_State *L) {
    size_t len = 0;
    if (lua_type(L, 1) != LUA_TSTRING) {
        return luaL_typeerror(L, 1, "string");
    }
    const char *source = lua_tolstring(L, 1, &len);
    const char *chunkname = luaL_optstring(L, 2, source);
    int env = !lua_isnone(L, 4) ? 4 : 0;
    int status = luaL_loadbufferx(L, source, len, chunkname, "t");
    if (status != LUA_OK) {
        // [..., message] -> [..., fail, message]
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env != 0) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1)) {
            lua_pop(L, 1);
        }
    }
    return 1;
}

/// `collectgarbage("count")` only: the other options would let a script run full
/// collections (CPU in C, out of the hook's reach) or change the collector.
static int bh_collectgarbage(lua_State *L) {
    const char *option = luaL_optstring(L, 1, "collect");
    if (strcmp(option, "count") != 0) {
        return luaL_error(L, "collectgarbage: only \"count\" is allowed in the sandbox");
    }
    lua_pushnumber(L, (lua_Number)bh_context_of(L)->mem_used / 1024.0);
    return 1;
}

// MARK: - log

/// `log(...)`: the arguments as `tostring` shows them, joined by tabs, one line of at
/// most BH_LOG_LINE_MAX bytes (CR, LF and NUL become spaces so one call is one
/// line), handed to the host's log callback. Never written to stdout.
static int bh_log(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    int n = lua_gettop(L);
    // Convert every argument first: __tostring is script code and could call log
    // itself, which would reuse ctx->log_line while this line is being built.
    for (int i = 1; i <= n; i++) {
        luaL_tolstring(L, i, NULL);
        lua_replace(L, i);
    }
    size_t used = 0;
    int cut = 0;
    for (int i = 1; i <= n && !cut; i++) {
        size_t len = 0;
        const char *s = lua_tolstring(L, i, &len);
        if (i > 1) {
            if (used == BH_LOG_LINE_MAX) {
                cut = 1;
                break;
            }
            ctx->log_line[used++] = '\t';
        }
        size_t room = BH_LOG_LINE_MAX - used;
        if (len > room) {
            len = room;
            cut = 1;
        }
        memcpy(ctx->log_line + used, s, len);
        used += len;
    }
    for (size_t i = 0; i < used; i++) {
        char c = ctx->log_line[i];
        if (c == '\n' || c == '\r' || c == '\0') {
            ctx->log_line[i] = ' ';
        }
    }
    if (cut) {
        memcpy(ctx->log_line + used, "...", 3);
        used += 3;
    }
    if (ctx->log_fn != NULL) {
        ctx->log_fn(ctx->log_ud, ctx->log_line, used);
    }
    return 0;
}

// MARK: - Coroutines

enum { BH_CO_RUNNING, BH_CO_SUSPENDED, BH_CO_NORMAL, BH_CO_DEAD };
static const char *const bh_co_status_names[] = {"running", "suspended", "normal", "dead"};

/// How many closes of coroutines may run inside one another (a `__close` handler
/// that closes another coroutine, whose handler closes another...).
///
/// Lua 5.4.4's `lua_resetthread` runs the handlers on the closed coroutine with
/// the C-call count that coroutine had when it last yielded, so the C-stack limit
/// (LUAI_MAXCCALLS, 200 levels) starts afresh at every nested close: a chain of
/// 20 000 coroutines, each closing the next from a `__close` handler, fits the free
/// cohort's limits and overflows an 8 MiB C stack (SIGSEGV, the whole worker).
/// Upstream fixed it in 5.4.6 (`lua_closethread(co, from)`); Debian 12's
/// 5.4.4-3+deb12u1 does not carry that fix, so the sandbox counts nested closes
/// itself. Each nested level may still hold Lua's own 200 C levels, so the worst
/// case is (this + 1) times Lua's normal deepest C recursion: with 8, a script
/// doing both at every level ran in a 1.5 MiB C stack (debug build, measured);
/// worker threads have 8 MiB.
#define BH_MAX_NESTED_CLOSES 8

int bh_nested_close_limit = BH_MAX_NESTED_CLOSES;

int bh_set_nested_close_limit(int limit) {
    int previous = bh_nested_close_limit;
    bh_nested_close_limit = limit;
    return previous;
}

/// Pushes the message of a close refused by bh_close_thread.
static void bh_push_close_overflow(lua_State *L) {
    lua_pushfstring(L, "C stack overflow (more than %d coroutine closes inside one another)",
                    BH_MAX_NESTED_CLOSES);
}

/// The status `coroutine.status` would report for `co`, seen from `L`.
static int bh_co_status(lua_State *L, lua_State *co) {
    if (L == co) {
        return BH_CO_RUNNING;
    }
    switch (lua_status(co)) {
    case LUA_YIELD:
        return BH_CO_SUSPENDED;
    case LUA_OK: {
        lua_Debug ar;
        if (lua_getstack(co, 0, &ar)) {
            return BH_CO_NORMAL;  // It resumed another coroutine and waits for it.
        }
        return lua_gettop(co) == 0 ? BH_CO_DEAD : BH_CO_SUSPENDED;
    }
    default:
        return BH_CO_DEAD;  // It died with an error.
    }
}

static lua_State *bh_check_coroutine(lua_State *L, int arg) {
    lua_State *co = lua_tothread(L, arg);
    luaL_argexpected(L, co != NULL, arg, "coroutine");
    return co;
}

/// Resumes `co` with the `narg` values on top of `L`. Returns the number of results
/// moved onto `L`, or -1 with the error value on top of `L`. Before resuming, the
/// coroutine's hook is brought to the call's mode (installed with the current
/// count, or sticky once over a limit), so a coroutine created under other limits,
/// or left sticky by an earlier call, is counted correctly. A coroutine that dies
/// while the call is over its limit is marked dead for good (see bh_dead_hook).
static int bh_resume(lua_State *L, lua_State *co, int narg) {
    bh_context *ctx = bh_context_of(L);
    if (lua_gethook(co) == bh_dead_hook) {
        lua_pop(L, narg);
        lua_pushliteral(L, "cannot resume dead coroutine");
        return -1;
    }
    if (!lua_checkstack(co, narg)) {
        lua_pop(L, narg);
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    // `running` first: a tick from here on hooks `co`, and the sync below then
    // keeps that hook.
    ctx->running = co;
    if (co != L) {
        bh_sync_thread_hook(co, ctx);
    }
    lua_xmove(L, co, narg);
    int nres = 0;
    int status = lua_resume(co, L, narg, &nres);
    // Back on `L`, which a tick that landed in `co` did not hook.
    ctx->running = L;
    bh_sync_thread_hook(L, ctx);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    int died = lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD;
    if (died && (ctx->hit & BH_HIT_STOP)) {
        lua_sethook(co, bh_dead_hook, LUA_MASKCOUNT, 1);
    }
    lua_xmove(co, L, 1);
    return -1;
}

/// Closes `co` from `L` with lua_resetthread, which runs its pending `__close`
/// handlers on `co`, hooked like any resumed coroutine, and leaves the error object
/// there (it never raises). Unless BH_MAX_NESTED_CLOSES closes already run inside
/// one another: then nothing runs, `co` is left as it was, and -1 is returned.
static int bh_close_thread(lua_State *L, lua_State *co, bh_context *ctx) {
    if (bh_nested_close_limit > 0 && ctx->close_depth >= bh_nested_close_limit) {
        return -1;
    }
    ctx->close_depth++;
    ctx->running = co;
    bh_sync_thread_hook(co, ctx);
    int status = lua_resetthread(co);
    ctx->running = L;
    bh_sync_thread_hook(L, ctx);
    ctx->close_depth--;
    return status;
}

/// `coroutine.create(f)`. The new thread inherits the creating thread's hook.
static int bh_co_create(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    return 1;
}

/// `coroutine.resume(co, ...)` through bh_resume.
static int bh_co_resume(lua_State *L) {
    lua_State *co = bh_check_coroutine(L, 1);
    int r = bh_resume(L, co, lua_gettop(L) - 1);
    if (r < 0) {
        // [..., error] -> [..., false, error]
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    // [..., results] -> [..., true, results]
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;
}

/// The function `coroutine.wrap` returns (its upvalue is the coroutine). When the
/// coroutine dies with an error it is closed before the error propagates, as in
/// the stock library — except while over a limit (the limit error is raised and the
/// dead coroutine's `__close` handlers, which would run with hooks off, never run),
/// for a coroutine marked dead by a limit earlier, and when BH_MAX_NESTED_CLOSES
/// closes already run inside one another (the error raised is then "C stack
/// overflow ...").
static int bh_co_wrapped(lua_State *L) {
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int r = bh_resume(L, co, lua_gettop(L));
    if (r >= 0) {
        return r;
    }
    // [..., error]
    int status = lua_status(co);
    if (status != LUA_OK && status != LUA_YIELD) {
        bh_context *ctx = bh_context_of(L);
        if (ctx->hit & BH_HIT_STOP) {
            bh_raise_limit(L, ctx);
        }
        if (lua_gethook(co) != bh_dead_hook) {
            // Runs __close handlers; leaves the error on co.
            if (bh_close_thread(L, co, ctx) < 0) {
                bh_push_close_overflow(L);   // [..., error, overflow message]
            } else {
                lua_xmove(co, L, 1);         // [..., error, close error]
            }
        }
        if (lua_type(L, -1) == LUA_TSTRING) {
            // Add where the wrap function was called, as the stock library does.
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
    }
    return lua_error(L);
}

/// `coroutine.wrap(f)`.
static int bh_co_wrap(lua_State *L) {
    bh_co_create(L);
    lua_pushcclosure(L, bh_co_wrapped, 1);
    return 1;
}

/// `coroutine.close(co)`: closes a suspended or dead coroutine, running its pending
/// `__close` handlers (counted by the hook, which is synced first). Refuses while
/// the call is over a limit (raises the limit error), for a coroutine marked
/// dead by a limit (returns false and a message, its handlers never run), and
/// when BH_MAX_NESTED_CLOSES closes already run inside one another (returns false
/// and "C stack overflow ...", the coroutine is left as it was).
static int bh_co_close(lua_State *L) {
    lua_State *co = bh_check_coroutine(L, 1);
    int status = bh_co_status(L, co);
    if (status != BH_CO_DEAD && status != BH_CO_SUSPENDED) {
        return luaL_error(L, "cannot close a %s coroutine", bh_co_status_names[status]);
    }
    bh_context *ctx = bh_context_of(L);
    if (ctx->hit & BH_HIT_STOP) {
        bh_raise_limit(L, ctx);
    }
    if (lua_gethook(co) == bh_dead_hook) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "coroutine was stopped by a limit; its to-be-closed variables stay open");
        return 2;
    }
    int closed = bh_close_thread(L, co, ctx);
    if (closed == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    if (closed < 0) {
        bh_push_close_overflow(L);
    } else {
        lua_xmove(co, L, 1);
    }
    return 2;
}

// MARK: - Opening the sandbox

/// Base-library functions a script keeps as they are.
static const char *const bh_base_names[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawlen", "rawset", "select", "tonumber", "tostring", "type", "_VERSION",
    NULL,
};

static const luaL_Reg bh_base_replacements[] = {
    {"setmetatable", bh_setmetatable},
    {"xpcall", bh_xpcall},
    {"load", bh_load_lua},
    {"collectgarbage", bh_collectgarbage},
    {"log", bh_log},
    {NULL, NULL},
};

static const luaL_Reg bh_coroutine_replacements[] = {
    {"create", bh_co_create},
    {"resume", bh_co_resume},
    {"wrap", bh_co_wrap},
    {"close", bh_co_close},
    {NULL, NULL},
};

/// Copies `names` from the table at `from` into the table at `to`.
static void bh_copy_fields(lua_State *L, int from, int to, const char *const *names) {
    for (; *names != NULL; names++) {
        lua_getfield(L, from, *names);
        lua_setfield(L, to, *names);
    }
}

/// Calls a standard `luaopen_*` function and leaves its library table on the stack.
static void bh_open_library(lua_State *L, lua_CFunction open) {
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
}

static int bh_open_body(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    bh_intern_keys(L, ctx);
    // luaopen_base fills the state's first global table with every base function
    // (print, dofile, loadfile…); the script never sees that table.
    bh_open_library(L, luaopen_base);                // [base]
    lua_createtable(L, 0, 32);                       // [base, env]
    bh_copy_fields(L, 1, 2, bh_base_names);
    luaL_setfuncs(L, bh_base_replacements, 0);
    lua_pushvalue(L, 2);
    lua_setfield(L, 2, "_G");

    // string also becomes the __index of the string metatable (per state, so one
    // script's changes to it reach no other script). dump would give bytecode.
    bh_open_library(L, luaopen_string);              // [base, env, string]
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_setfield(L, 2, "string");                    // [base, env]

    bh_open_library(L, luaopen_table);
    lua_setfield(L, 2, "table");
    bh_open_library(L, luaopen_math);
    lua_setfield(L, 2, "math");
    bh_open_library(L, luaopen_utf8);
    lua_setfield(L, 2, "utf8");

    static const char *const coroutine_kept[] = {"yield", "status", "running", "isyieldable", NULL};
    bh_open_library(L, luaopen_coroutine);           // [base, env, stock coroutine]
    lua_createtable(L, 0, 8);                        // [base, env, stock, coroutine]
    bh_copy_fields(L, 3, 4, coroutine_kept);
    luaL_setfuncs(L, bh_coroutine_replacements, 0);
    lua_setfield(L, 2, "coroutine");                 // [base, env, stock]
    lua_pop(L, 1);                                   // [base, env]

    static const char *const os_kept[] = {"time", "clock", "date", NULL};
    bh_open_library(L, luaopen_os);                  // [base, env, stock os]
    lua_createtable(L, 0, 3);                        // [base, env, stock, os]
    bh_copy_fields(L, 3, 4, os_kept);
    lua_setfield(L, 2, "os");                        // [base, env, stock]
    lua_pop(L, 1);                                   // [base, env]

    bh_push_json(L);                                 // [base, env, json]
    lua_setfield(L, 2, "json");                      // [base, env]

    // The sandbox table becomes the global table: chunks loaded from now on (the
    // script, and `load` inside it) get it as their _ENV.
    lua_pushvalue(L, 2);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_settop(L, 0);

    // Before any customer code exists: every coroutine the script creates inherits
    // the main thread's hook.
    bh_sync_hook(L, ctx);
    return 0;
}

bh_outcome bh_open_sandbox(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    ctx->call_base = lua_gettop(L);
    lua_pushcfunction(L, bh_open_body);
    int status = lua_pcall(L, 0, 0, 0);
    if (status == LUA_OK) {
        return BH_OK;
    }
    // Only memory can fail here.
    ctx->error.ptr = "cannot open the sandbox: out of memory";
    ctx->error.len = strlen(ctx->error.ptr);
    return BH_LIMIT_MEMORY;
}
