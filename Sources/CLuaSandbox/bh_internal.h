#ifndef BULKHEAD_BH_INTERNAL_H
#define BULKHEAD_BH_INTERNAL_H

// clock_gettime and strdup are POSIX, not ISO C: ask for them before any system
// header, whatever -std the compiler gets.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

// Declarations shared by the C files of the sandbox; not part of the module's
// public header, so Swift never sees them.

#include "bh_sandbox.h"

#include <lualib.h>

/// `lua_error` and `luaL_error` never return (they longjmp) but are not declared
/// so; functions that end in one are declared with this, and say so after the call.
#define BH_NORETURN _Noreturn void
#define BH_UNREACHABLE() __builtin_unreachable()

/// The counting, capped allocator (bh_state.c).
void *bh_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/// The instruction hook (bh_state.c).
void bh_hook(lua_State *L, lua_Debug *ar);

/// Marks a coroutine that died while the call was over its instruction or wall
/// limit: such a thread may have died inside the hook, where Lua switched its
/// hooks off for good (its `allowhook` stays 0), so nothing may ever run on it
/// again — not a resume, not its `__close` handlers. Installed as its hook so the
/// mark costs no allocation; it never fires while the thread's hooks are off, and
/// raises the limit error if it ever does.
void bh_dead_hook(lua_State *L, lua_Debug *ar);

/// Puts the hook of thread `co` into the mode the context asks for: removed when
/// the call runs without an instruction limit, count 1 (sticky) once a limit is
/// hit, the normal count otherwise. A few loads when nothing changes.
void bh_sync_thread_hook(lua_State *co, bh_context *ctx);

/// A protected call into the state's Lua code starts on this thread (bh_tick.c):
/// `L` runs it, and a lazy call's tick may now hook it. Falls back to counting from
/// the first instruction when the thread cannot have a timer.
void bh_call_enter(lua_State *L, bh_context *ctx);

/// The protected call has returned: no tick hooks anything on this thread until the
/// next bh_call_enter. (bh_finish calls it.)
void bh_call_leave(bh_context *ctx);

/// Raises the error of the limit the call hit (the message recorded at the first
/// hit). Only while `ctx->hit & BH_HIT_STOP`.
BH_NORETURN bh_raise_limit(lua_State *L, bh_context *ctx);

/// Pushes the `json` library table (bh_json.c).
void bh_push_json(lua_State *L);

/// Length of the valid UTF-8 sequence at `p` (at most `n` bytes available), or 0
/// when it is not valid (overlong forms, surrogates and code points past U+10FFFF
/// are refused).
size_t bh_utf8_sequence(const unsigned char *p, size_t n);

// MARK: - Call machinery (bh_call.c), shared by the script's `handle(req)` call and
// the platform runtime's `on_request(req, rules)` call (which pushes the same `req`).

/// Strings the calls push on every request: the keys, and the commonest values
/// (the empty query and body, GET). Each state interns them once
/// (`bh_intern_keys`, when the sandbox opens) and keeps them in its registry:
/// pushing one is then an array read, where a C string goes through Lua's string
/// cache (a hash and a strcmp) every time, and bytes through the string table.
enum {
    BH_KEY_METHOD, BH_KEY_PATH, BH_KEY_QUERY, BH_KEY_BODY, BH_KEY_HEADERS,
    BH_KEY_HANDLE, BH_KEY_ON_REQUEST, BH_KEY_EMPTY, BH_KEY_GET, BH_KEY_COUNT
};

/// Interns the keys and records their registry references in `ctx->keys`.
void bh_intern_keys(lua_State *L, bh_context *ctx);

/// Pushes one of the interned keys.
static inline void bh_push_key(lua_State *L, const bh_context *ctx, int key) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->keys[key]);
}

/// Pushes the `req` table built from `request` (inside a protected call).
void bh_push_request(lua_State *L, const bh_request *request);

/// Pushes the global function `name`, read raw from the sandbox globals; raises
/// "name: script does not define function `signature`" when it is not a function.
void bh_push_required_function(lua_State *L, bh_context *ctx, const char *name, const char *signature);

/// The same, with the name one of the interned keys (the per-request calls).
void bh_push_required_key(lua_State *L, bh_context *ctx, int key, const char *signature);

/// Raises "chunk: message" (for errors with no script line to point at).
BH_NORETURN bh_fail(lua_State *L, bh_context *ctx, const char *format, ...);

/// The host-facing outcome of a protected call that returned `status`, with
/// ctx->error set on failure. Allocates nothing (runs outside protection).
bh_outcome bh_finish(lua_State *L, bh_context *ctx, int status);

#endif
