#ifndef BULKHEAD_BH_SANDBOX_H
#define BULKHEAD_BH_SANDBOX_H

// The C half of the Lua sandbox.
//
// Why C at all: `lua_error`/`luaL_error` longjmp, and a longjmp must never cross a
// Swift frame. So everything that can raise a Lua error — the instruction hook, the
// sandbox's own library functions, building the request table, converting the
// response, anything that allocates Lua objects — lives here and runs inside a
// protected call started from C. Swift only calls the functions below, none of which
// raises: each one either cannot fail or returns a status.
//
// Threading: a lua_State and its context belong to one thread at a time.

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Byte views

/// A (pointer, length) view of bytes owned by someone else: the server's receive
/// buffer on the way in, a Lua string anchored on the Lua stack on the way out.
/// Why not a Swift type: C must read and write it without any conversion.
typedef struct bh_bytes {
    const void *ptr;
    size_t len;
} bh_bytes;

/// One HTTP header as two byte views.
typedef struct bh_header {
    bh_bytes name;
    bh_bytes value;
} bh_header;

/// A request as the server received it, pushed into Lua with `lua_pushlstring`
/// straight from these views: no Swift String on the data plane.
typedef struct bh_request {
    bh_bytes method;
    bh_bytes path;
    /// The raw query string without `?`; empty when there is none.
    bh_bytes query;
    bh_bytes body;
    /// Points at `header_count` `bh_header`s (Swift's `LuaHeader` has the same
    /// layout); `void` so Swift can hand over its own buffer without a cast.
    const void *headers;
    size_t header_count;
} bh_request;

/// The most response headers a script may return; more is a script error. The
/// response is converted into a fixed array in the context, so this also bounds it.
#define BH_MAX_RESPONSE_HEADERS 64

/// A converted response. Every view points into a Lua string anchored on the Lua
/// stack (or into static storage) until `bh_call_end` pops it.
typedef struct bh_response {
    int status;
    int header_count;
    bh_header headers[BH_MAX_RESPONSE_HEADERS];
    bh_bytes body;
} bh_response;

// MARK: - Per-state context

/// Why a call stopped (bits of `bh_context.hit`). CPU and WALL are sticky for the
/// rest of the call: once set, the call fails with that limit whatever the script
/// does afterwards.
enum {
    BH_HIT_CPU = 1u << 0,
    BH_HIT_WALL = 1u << 1,
    BH_HIT_MEMORY = 1u << 2,
    /// Either of the limits that stop a call for good.
    BH_HIT_STOP = BH_HIT_CPU | BH_HIT_WALL,
};

/// The outcome of a call into Lua, as the host reports it.
typedef enum bh_outcome {
    BH_OK = 0,
    BH_SCRIPT_ERROR = 1,
    BH_LIMIT_CPU = 2,
    BH_LIMIT_MEMORY = 3,
    BH_LIMIT_WALL = 4,
    BH_SYNTAX = 5,
} bh_outcome;

/// Receives one `log(...)` line (not NUL-terminated, at most `BH_LOG_LINE_MAX`
/// bytes). Why a C function pointer: C callbacks cannot capture, so Swift passes a
/// `@convention(c)` thunk and its context through `ud`.
typedef void (*bh_log_fn)(void *ud, const char *line, size_t len);

/// The longest `log(...)` line; longer ones are cut and end with "...".
#define BH_LOG_LINE_MAX 4096

/// Longest error message handed to the host; longer ones are cut.
#define BH_MESSAGE_MAX 4096

/// Everything the allocator, the hook and the sandbox functions need, reached from
/// any thread (coroutine) of the state through the allocator's `ud`
/// (`lua_getallocf`), since C callbacks cannot capture. One per `lua_State`; Swift
/// allocates it, `bh_context_init` fills it, and it must outlive `lua_close`.
typedef struct bh_context {
    // Memory, maintained by the allocator for the whole life of the state.
    size_t mem_used;
    /// 0 = no cap.
    size_t mem_limit;

    // Per call (reset by bh_begin: a few stores).
    /// Instructions left for the whole call, shared by every coroutine of it.
    int64_t budget;
    /// CLOCK_MONOTONIC nanoseconds; 0 = no deadline.
    uint64_t deadline_ns;
    /// When the last call ended, as read to check its deadline (bh_finish); 0 when
    /// it had none or stopped over a limit. The host reuses it rather than reading
    /// the clock again.
    uint64_t finished_ns;
    /// BH_HIT_* bits.
    unsigned hit;
    /// The count the hook runs with (0 = no hook at all): about 1000 instructions
    /// between checks, fewer when the whole budget is smaller. Volatile: the tick
    /// signal (bh_tick.c) sets it when it arms a lazy call's hook.
    volatile int hook_count;
    /// The call runs without a hook until the first tick of the thread's CPU-time
    /// timer lands in it (see bh_tick.c); then the hook counts the rest.
    int lazy;
    /// Budgets from this size up run lazily in this state; 0 = BH_LAZY_MIN_BUDGET.
    /// The platform runtime lowers it (its budget guards against a runaway, where
    /// stopping within a factor of two is fine).
    int64_t lazy_min_budget;
    /// The thread (coroutine) running the call's Lua code right now: the one the
    /// tick hooks. Set when a call starts and around every resume.
    lua_State *volatile running;
    /// Stack top when the current call began; bh_call_end returns to it.
    int call_base;
    /// `coroutine.close` (and the closing done by `coroutine.wrap`) running inside
    /// one another now: Lua 5.4.4 does not count these in its C-stack limit, so
    /// the sandbox does (see BH_MAX_NESTED_CLOSES).
    int close_depth;

    // Results of the last call, valid until bh_call_end.
    bh_response response;
    /// The error message of a failed call (points into `message` or into a Lua
    /// string on the stack).
    bh_bytes error;

    // Configuration.
    /// The script's name as the host gave it (owned, NUL-terminated).
    char *chunk_name;
    /// Registry references of the strings every call pushes (see `bh_push_key`).
    int keys[12];
    bh_log_fn log_fn;
    void *log_ud;

    // Scratch.
    /// The request the current protected call pushes (only during the call).
    const bh_request *request;
    /// The first limit message of a call ("name:line: instruction limit exceeded").
    char limit_message[256];
    /// Messages built without allocating Lua memory.
    char message[BH_MESSAGE_MAX];
    char log_line[BH_LOG_LINE_MAX + 4];
} bh_context;

/// Fills a new context: no limits, no log, no chunk name. Why C: one memset, and
/// the struct's invariants live next to the code that uses them.
void bh_context_init(bh_context *ctx);

/// Frees what the context owns (the chunk name). Call after `lua_close`: the
/// allocator still counts into the context while the state is being closed. Why C:
/// the name was allocated by C (strdup).
void bh_context_destroy(bh_context *ctx);

/// Copies `name` as the chunk name used in messages and for loading. Returns 0 when
/// out of memory. Why C: the hook and the library functions format messages with
/// it and must not touch Swift objects.
int bh_context_set_chunk_name(bh_context *ctx, const char *name);

/// The context of any thread of a state created by `bh_state_new`.
/// Why: hooks and library functions get only a `lua_State *`.
static inline bh_context *bh_context_of(lua_State *L) {
    void *ud = NULL;
    (void)lua_getallocf(L, &ud);
    return (bh_context *)ud;
}

/// CLOCK_MONOTONIC in nanoseconds: the one clock the hook, the host and the
/// watchdog share (Swift's ContinuousClock is CLOCK_BOOTTIME on Linux). A vDSO read,
/// not a system call.
static inline uint64_t bh_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// MARK: - State

/// Creates a state whose allocator is the counting, capped `bh_alloc` with `ctx` as
/// its `ud`, and sets a panic handler. Returns NULL when out of memory (or over the
/// cap already). Why C: `lua_newstate` needs the C allocator, and the context must
/// be the `ud`.
lua_State *bh_state_new(bh_context *ctx);

/// Sets the collector's pause of `L`: a new cycle starts when the heap reaches
/// `percent` % of its size after the last one (Lua's default is 200).
void bh_set_gc_pause(lua_State *L, int percent);

/// Opens the sandbox in `L` inside a protected call: the allowed libraries, the
/// replaced functions (setmetatable, xpcall, load, collectgarbage, coroutine.wrap,
/// coroutine.close, coroutine.resume), `log`, `json`, and a fresh global table with
/// only the allow-listed names. Installs the instruction hook from `ctx` on the main
/// thread before any customer code exists. Returns a `bh_outcome` (a failure here
/// is out of memory).
bh_outcome bh_open_sandbox(lua_State *L);

// MARK: - Limits

/// The normal number of instructions between two hook calls.
#define BH_HOOK_PERIOD 1000

/// Budgets from this size up run lazily: no hook until a tick of the thread's
/// timer (BH_TICK_NS) lands in the call, then counted with the instructions the
/// time before that tick may have covered charged up front (BH_LAZY_CHARGE, at most
/// 5% of such a budget). A call that ends within a tick, which is nearly every
/// call, pays nothing per instruction; the count hook, measured, costs about 12% of
/// a busy handler. Each tick is a signal: 2,000 a second on a busy thread.
#define BH_LAZY_MIN_BUDGET 10000000

/// The tick: a periodic CLOCK_MONOTONIC timer of 500 µs.
#define BH_TICK_NS 500000

/// What one tick is charged, in instructions: 1 per ns over the tick, more than
/// twice the fastest loop measured here (a bare numeric `for`, 0.37 per ns), so a
/// script is not counted below what it ran; it may be stopped up to this many
/// instructions early.
#define BH_LAZY_CHARGE 500000

/// Whether budgets of BH_LAZY_MIN_BUDGET and more run lazily; 0 counts every call
/// from its first instruction. Set once by `bh_set_lazy_hook` (and to 0 when the
/// environment has BULKHEAD_COUNT_HOOK=1, or the timer cannot be made).
extern int bh_lazy_hook_enabled;

/// Turns lazy budgets on or off for calls that begin from now on (benchmarks
/// compare the two). Returns the previous setting. Why C: the flag is C's.
int bh_set_lazy_hook(int enabled);

/// Whether lazy budgets are on. Why C: Swift 6 refuses a mutable C global.
int bh_lazy_hook(void);

/// Sets how many `coroutine.close` may run inside one another (8; 0 = no guard,
/// which lets Lua 5.4.4's bug overflow the C stack: only for fault-injection tests
/// of crash handling). Returns the previous limit.
int bh_set_nested_close_limit(int limit);

/// Puts the main thread's hook into the mode `hook_count` asks (installed, removed
/// or back from the sticky count of 1). Why C: needs the C hook function.
void bh_sync_hook(lua_State *L, bh_context *ctx);

/// Starts the main thread's instruction count afresh at `count` (its hook already
/// counts by `count`). Why C: needs the C hook function.
void bh_restart_count(lua_State *L, int count);

/// Starts a call under limits: `instructions` (0 = no hook at all), a CLOCK_MONOTONIC
/// deadline in ns (0 = none). A few stores; touches the hook only when its mode
/// changes. Why C: inline, and the hook is C.
static inline void bh_begin(lua_State *L, bh_context *ctx, int64_t instructions, uint64_t deadline_ns) {
    int count = 0;
    int64_t lazy_min = ctx->lazy_min_budget > 0 ? ctx->lazy_min_budget : BH_LAZY_MIN_BUDGET;
    ctx->lazy = instructions >= lazy_min && bh_lazy_hook_enabled;
    if (instructions > 0 && !ctx->lazy) {
        count = instructions < BH_HOOK_PERIOD ? (int)instructions : BH_HOOK_PERIOD;
    }
    ctx->budget = instructions;
    ctx->deadline_ns = deadline_ns;
    ctx->finished_ns = 0;
    ctx->close_depth = 0;
    ctx->hit = 0;
    ctx->limit_message[0] = '\0';
    ctx->error.ptr = NULL;
    ctx->error.len = 0;
    if (count != ctx->hook_count || lua_gethookcount(L) != count) {
        ctx->hook_count = count;
        bh_sync_hook(L, ctx);
    } else if (count > 0) {
        // The hook charges a whole `count` each time it fires, and Lua keeps a
        // thread's count between calls: left as it was, the previous call's
        // remainder would charge this call for instructions it never ran (with a
        // budget of one period, a call of a few dozen instructions failed).
        bh_restart_count(L, count);
    }
}

// MARK: - Loading and calling

/// Loads `source` as a text-only chunk named after the context's chunk name and
/// leaves it on the stack (or the error message). Returns a `bh_outcome`: BH_SYNTAX
/// with "name:line: message", BH_LIMIT_MEMORY, or BH_OK. Binary chunks are refused.
/// Why C: the chunk name needs the "=" prefix and the mode must always be "t".
bh_outcome bh_load(lua_State *L, const char *source, size_t len);

/// Runs the function on top of the stack (the loaded chunk) with no arguments in a
/// protected call, then, unless `required` is NULL, checks that the global
/// `required` is a function (raw lookup; the error says "script does not define
/// function `signature`"). Returns a `bh_outcome`; on failure `ctx->error` holds
/// the message. Pop with `bh_call_end`. Why C: `lua_pcall` is a macro and the
/// check allocates the key string. (The platform runtime will pass "on_request".)
bh_outcome bh_run_chunk(lua_State *L, const char *required, const char *signature);

/// Calls the global `handle(req)` with `req` built from `request`, and converts the
/// result into `ctx->response`, all inside one protected call, raw access only (no
/// metamethod of the response runs). Returns a `bh_outcome`; after a CPU or wall
/// limit hit the outcome is the limit even if the script returned normally, and a
/// call that ends past its deadline (stuck in one C function, where the hook never
/// fires) is limit-wall too. On
/// success the response views stay valid until `bh_call_end`; on failure
/// `ctx->error` holds the message. Why C: request pushing and response conversion
/// allocate and raise.
bh_outcome bh_call_handle(lua_State *L, const bh_request *request);

/// Pops what the last `bh_run_chunk`/`bh_call_handle` left on the stack (the anchors
/// of the response and error views). Why C: `lua_pop` is a macro; lua_settop here
/// cannot raise (no to-be-closed variables live in the host's frame).
static inline void bh_call_end(lua_State *L) {
    lua_settop(L, bh_context_of(L)->call_base);
}

/// The converted response of the last successful `bh_call_handle`. Why: a stable
/// pointer to a field, without Swift's inout-to-pointer rules.
static inline const bh_response *bh_context_response(const bh_context *ctx) {
    return &ctx->response;
}

/// Header `i` of `response`. Why: C arrays in structs import into Swift as tuples.
static inline bh_header bh_response_header(const bh_response *response, int i) {
    return response->headers[i];
}

// MARK: - Macros and variadic functions for Swift
//
// Swift needs none beyond the ones above: all stack work happens in C inside
// protected calls (an allocating API call made from Swift outside one would reach
// the panic handler on out-of-memory), so Swift never pushes, pops or reads Lua
// values itself. `bh_call_end` stands for `lua_pop`; `bh_context_of` for
// `lua_getallocf`'s out-parameter; `lua_close` is called directly (a plain
// function). Wrappers for LUA_REGISTRYINDEX, lua_pcall, lua_tostring or lua_gc
// belong here if a Swift caller ever needs one.

#ifdef __cplusplus
}
#endif

#endif

// MARK: - Platform runtime (bh_platform.c)
//
// The platform's Lua runtime runs before every customer script in a sandboxed state
// of its own, opened and limited like a script's (above), with the rules artifact
// decoded once into a Lua table kept in the registry. Appended after the rest of
// this header, with a guard of its own.

#ifndef BULKHEAD_BH_SANDBOX_PLATFORM_H
#define BULKHEAD_BH_SANDBOX_PLATFORM_H

#ifdef __cplusplus
extern "C" {
#endif

/// What `on_request(req, rules)` decided, read raw from its result.
typedef struct bh_verdict {
    /// 0: pass (the runtime returned nil); 1: block.
    int block;
    /// The status of a block: the runtime's, or 403 when it gave none.
    int status;
    /// The body of a block, anchored on the Lua stack until `bh_call_end`; `ptr` is
    /// NULL when the runtime gave none (the host then uses its default body).
    bh_bytes body;
} bh_verdict;

/// Decodes `json` (the rules artifact) with the sandbox's strict JSON decoder inside
/// a protected call and, if it is an object, makes it the `rules` table every later
/// `bh_platform_call` passes; then runs a full collection so the previous table's
/// memory goes back at once. On failure the previous table stays and `ctx->error`
/// holds "rules: json.decode: ... at byte N" or "rules: the top level must be a
/// JSON object, got an array" (BH_SCRIPT_ERROR), or a memory/wall limit message. Pop
/// with `bh_call_end`. Why C: decoding allocates and raises.
bh_outcome bh_platform_set_rules(lua_State *L, const char *json, size_t len);

/// Calls the global `on_request(req, rules)` (read raw from the runtime's globals)
/// with `req` built from `request` exactly as a customer script gets it (a fresh
/// table every call) and the rules table, then converts the result into `*verdict`
/// with raw access only: nil is a pass; a table whose `action` is "block" is a
/// block (`status` an integer from 200 to 599, default 403; `body` a string or
/// nil); anything else raises "runtime.lua: bad verdict from on_request: ...".
/// Returns a `bh_outcome` like `bh_call_handle` (limits first). On success the body
/// view stays valid until `bh_call_end`; on failure `ctx->error` holds the message.
/// Why C: request pushing and the conversion allocate and raise.
bh_outcome bh_platform_call(lua_State *L, const bh_request *request, bh_verdict *verdict);

#ifdef __cplusplus
}
#endif

#endif
