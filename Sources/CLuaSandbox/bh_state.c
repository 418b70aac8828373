// The per-state context, the counting allocator and the instruction hook.

#include "bh_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// MARK: - Context

void bh_context_init(bh_context *ctx) {
    memset(ctx, 0, sizeof *ctx);
}

void bh_context_destroy(bh_context *ctx) {
    free(ctx->chunk_name);
    ctx->chunk_name = NULL;
}

int bh_context_set_chunk_name(bh_context *ctx, const char *name) {
    char *copy = strdup(name);
    if (copy == NULL) {
        return 0;
    }
    free(ctx->chunk_name);
    ctx->chunk_name = copy;
    return 1;
}

// MARK: - Allocator

void *bh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    bh_context *ctx = (bh_context *)ud;
    // When ptr is NULL, osize is the type of the object being created, not a size.
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        ctx->mem_used -= old;
        return NULL;
    }
    // Only growth is capped: Lua assumes a shrinking reallocation never fails. The
    // comparison is written so that neither side can overflow; mem_used may be
    // above a limit that was lowered while the state was in use.
    if (nsize > old && ctx->mem_limit != 0) {
        size_t growth = nsize - old;
        if (ctx->mem_used > ctx->mem_limit || growth > ctx->mem_limit - ctx->mem_used) {
            ctx->hit |= BH_HIT_MEMORY;
            return NULL;
        }
    }
    void *block = realloc(ptr, nsize);
    if (block == NULL) {
        ctx->hit |= BH_HIT_MEMORY;
        return NULL;
    }
    ctx->mem_used = ctx->mem_used - old + nsize;
    return block;
}

// MARK: - Hook

static void bh_apply_thread_hook(lua_State *co, bh_context *ctx, int hook_count) {
    if (hook_count == 0) {
        if (lua_gethook(co) != NULL) {
            lua_sethook(co, NULL, 0, 0);
        }
        return;
    }
    int want = (ctx->hit & BH_HIT_STOP) ? 1 : hook_count;
    if (lua_gethook(co) != bh_hook || lua_gethookcount(co) != want) {
        lua_sethook(co, bh_hook, LUA_MASKCOUNT, want);
    }
}

void bh_sync_thread_hook(lua_State *co, bh_context *ctx) {
    // The tick (bh_tick.c) may arm a lazy call's hook while this runs, and set a
    // hook on `co` that a stale count here would take off again: apply until the
    // count read before is still the count after. It changes at most once a call.
    int hook_count;
    do {
        hook_count = ctx->hook_count;
        bh_apply_thread_hook(co, ctx, hook_count);
    } while (hook_count != ctx->hook_count);
}

void bh_sync_hook(lua_State *L, bh_context *ctx) {
    bh_sync_thread_hook(L, ctx);
}

/// Writes "name:line: what" for the first limit hit of a call, while the hook's
/// activation record still says where the script was.
static void bh_record_limit(lua_State *L, lua_Debug *ar, bh_context *ctx, const char *what) {
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0) {
        snprintf(ctx->limit_message, sizeof ctx->limit_message, "%s:%d: %s", ar->short_src,
                 ar->currentline, what);
    } else {
        snprintf(ctx->limit_message, sizeof ctx->limit_message, "%s: %s",
                 ctx->chunk_name != NULL ? ctx->chunk_name : "?", what);
    }
}

BH_NORETURN bh_raise_limit(lua_State *L, bh_context *ctx) {
    if (ctx->limit_message[0] == '\0') {
        // Cannot happen (the flag and the message are set together); keep a message.
        snprintf(ctx->limit_message, sizeof ctx->limit_message, "%s: %s",
                 ctx->chunk_name != NULL ? ctx->chunk_name : "?",
                 (ctx->hit & BH_HIT_CPU) ? "instruction limit exceeded" : "wall-clock limit exceeded");
    }
    lua_pushstring(L, ctx->limit_message);
    lua_error(L);
    BH_UNREACHABLE();
}

void bh_hook(lua_State *L, lua_Debug *ar) {
    bh_context *ctx = bh_context_of(L);
    if (!(ctx->hit & BH_HIT_STOP)) {
        // This thread ran `count` instructions since the hook last fired here: its
        // own count, which differs from ctx->hook_count only for a thread still in
        // the sticky mode of an earlier call (or when the limits changed).
        int count = lua_gethookcount(L);
        ctx->budget -= count;
        if (count != ctx->hook_count) {
            bh_sync_thread_hook(L, ctx);
            if (ctx->hook_count == 0) {
                return;  // The call runs without an instruction limit now.
            }
        }
        if (ctx->budget > 0) {
            if (ctx->deadline_ns == 0 || bh_now_ns() < ctx->deadline_ns) {
                return;
            }
            ctx->hit |= BH_HIT_WALL;
            bh_record_limit(L, ar, ctx, "wall-clock limit exceeded");
        } else {
            ctx->hit |= BH_HIT_CPU;
            bh_record_limit(L, ar, ctx, "instruction limit exceeded");
        }
    }
    // Sticky from here on: fire on every instruction of this thread, so that a
    // `pcall` or `coroutine.resume` that catches this error gets at most one more
    // instruction before the next one. Other threads switch when their own hook
    // next fires (or when they are resumed) and find the flag set.
    if (lua_gethookcount(L) != 1) {
        lua_sethook(L, bh_hook, LUA_MASKCOUNT, 1);
    }
    bh_raise_limit(L, ctx);
}

void bh_dead_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    bh_context *ctx = bh_context_of(L);
    if (!(ctx->hit & BH_HIT_STOP)) {
        ctx->hit |= BH_HIT_CPU;
        snprintf(ctx->limit_message, sizeof ctx->limit_message,
                 "%s: code ran on a coroutine stopped by a limit",
                 ctx->chunk_name != NULL ? ctx->chunk_name : "?");
    }
    bh_raise_limit(L, ctx);
}

// MARK: - State

/// Reached only through a bug: an error raised outside any protected call. Lua
/// aborts the process after this returns; say why first (on stderr, never stdout).
static int bh_panic(lua_State *L) {
    const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
    char line[512];
    int n = snprintf(line, sizeof line, "bulkhead: unprotected Lua error: %s\n", message);
    if (n > 0) {
        ssize_t ignored = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)ignored;
    }
    return 0;
}

lua_State *bh_state_new(bh_context *ctx) {
    lua_State *L = lua_newstate(bh_alloc, ctx);
    if (L != NULL) {
        lua_atpanic(L, bh_panic);
    }
    return L;
}
