// The per-state context, the counting allocator and the instruction hook.

#include "bh_internal.h"

#include <pthread.h>
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

// Small blocks go through a cache of free blocks per thread, one list per size class
// of 16 bytes up to BH_SMALL_MAX. Every request makes and drops a few tables in each
// of its two states, and the collector frees them in bursts of up to a hundred:
// glibc's own per-thread cache holds 7 blocks a size, so most of a burst went
// through its slower bins, about 3% of a worker's time on the hello benchmark.
//
// Lua passes the size of every block it frees or resizes (osize), so no block needs
// a header: a block of Lua size n <= BH_SMALL_MAX is always a malloc'd block of its
// class's full size, made here, and goes back to the list of that class. Blocks stay
// malloc'd blocks, so any of them may also go to free() or realloc(). The cache of a
// thread holds at most BH_CACHE_MAX bytes and is freed when the thread exits.

#define BH_SMALL_MAX 1024
#define BH_SMALL_CLASSES (BH_SMALL_MAX / 16)
#define BH_CACHE_MAX (256 * 1024)

typedef struct bh_free_block {
    struct bh_free_block *next;
} bh_free_block;

typedef struct bh_block_cache {
    bh_free_block *lists[BH_SMALL_CLASSES];
    size_t bytes;
    int registered;     // the exit destructor knows this thread's cache
} bh_block_cache;

static __thread bh_block_cache bh_cache;
static pthread_key_t bh_cache_key;
static pthread_once_t bh_cache_key_once = PTHREAD_ONCE_INIT;
static int bh_cache_key_made;

static void bh_cache_release(void *cache_pointer) {
    bh_block_cache *cache = (bh_block_cache *)cache_pointer;
    for (int c = 0; c < BH_SMALL_CLASSES; c++) {
        bh_free_block *block = cache->lists[c];
        while (block != NULL) {
            bh_free_block *next = block->next;
            free(block);
            block = next;
        }
        cache->lists[c] = NULL;
    }
    cache->bytes = 0;
    // A block freed by a later destructor of this thread registers the cache again,
    // and glibc calls this again for it.
    cache->registered = 0;
}

static void bh_cache_make_key(void) {
    bh_cache_key_made = pthread_key_create(&bh_cache_key, bh_cache_release) == 0;
}

/// The class of a small block of n bytes (1 ... BH_SMALL_MAX): 0 for 1-16 bytes.
static inline int bh_small_class(size_t n) {
    return (int)((n - 1) >> 4);
}

/// A block of class c's full size, from the cache or malloc; NULL when out of memory.
static inline void *bh_small_take(int c) {
    bh_free_block *block = bh_cache.lists[c];
    if (block != NULL) {
        bh_cache.lists[c] = block->next;
        // The blocks were freed by a sweep a while ago: reading the next one's link
        // would miss the cache on the next take (half this function's time).
        __builtin_prefetch(block->next);
        bh_cache.bytes -= (size_t)(c + 1) * 16;
        return block;
    }
    return malloc((size_t)(c + 1) * 16);
}

/// Gives back a block of class c: to the cache while it has room, else to free().
static inline void bh_small_give(void *ptr, int c) {
    size_t size = (size_t)(c + 1) * 16;
    if (bh_cache.bytes + size > BH_CACHE_MAX) {
        free(ptr);
        return;
    }
    if (!bh_cache.registered) {
        // The first block this thread keeps: arrange for the cache's release at exit
        // (without a key, the thread keeps nothing).
        pthread_once(&bh_cache_key_once, bh_cache_make_key);
        if (!bh_cache_key_made || pthread_setspecific(bh_cache_key, &bh_cache) != 0) {
            free(ptr);
            return;
        }
        bh_cache.registered = 1;
    }
    bh_free_block *block = (bh_free_block *)ptr;
    block->next = bh_cache.lists[c];
    bh_cache.lists[c] = block;
    bh_cache.bytes += size;
}

/// Resizes or frees a block (nsize 0) of Lua size `old` (0 for a new block) to
/// nsize; NULL when out of memory, the old block then untouched.
static void *bh_resize(void *ptr, size_t old, size_t nsize) {
    if (nsize == 0) {
        if (old != 0 && old <= BH_SMALL_MAX) {
            bh_small_give(ptr, bh_small_class(old));
        } else {
            free(ptr);
        }
        return NULL;
    }
    if (nsize > BH_SMALL_MAX) {
        // A small block is a malloc'd block too: realloc takes it.
        return realloc(ptr, nsize);
    }
    int c = bh_small_class(nsize);
    if (old != 0 && old <= BH_SMALL_MAX && bh_small_class(old) == c) {
        return ptr;                                          // Already of that class.
    }
    void *block = bh_small_take(c);
    if (block == NULL) {
        // Lua counts on a shrink never failing: the old block, bigger than the class
        // needs, serves (and later joins that class's list, where a bigger block fits).
        return nsize < old ? ptr : NULL;
    }
    if (ptr != NULL) {
        memcpy(block, ptr, old < nsize ? old : nsize);
        bh_resize(ptr, old, 0);
    }
    return block;
}

void *bh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    bh_context *ctx = (bh_context *)ud;
    // When ptr is NULL, osize is the type of the object being created, not a size.
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        bh_resize(ptr, old, 0);
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
    void *block = bh_resize(ptr, old, nsize);
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

void bh_restart_count(lua_State *L, int count) {
    // Setting the hook again resets the thread's count to `count`.
    lua_sethook(L, bh_hook, LUA_MASKCOUNT, count);
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

void bh_set_gc_pause(lua_State *L, int percent) {
    lua_gc(L, LUA_GCINC, percent, 0, 0);                     // 0: step size and multiplier kept
}

lua_State *bh_state_new(bh_context *ctx) {
    lua_State *L = lua_newstate(bh_alloc, ctx);
    if (L != NULL) {
        lua_atpanic(L, bh_panic);
    }
    return L;
}
