#ifndef BULKHEAD_BH_PLATFORM_H
#define BULKHEAD_BH_PLATFORM_H

// The C half of the platform runtime: the Lua file the platform runs before every
// customer script, in a sandboxed state of its own (bh_sandbox.h), with the rules
// artifact decoded once into a Lua table kept in the registry.
//
// Same rules as the rest of the sandbox: everything that can raise runs inside a
// protected call started here; the functions below only return a status.

#include "bh_sandbox.h"

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
/// JSON object, got array" (BH_SCRIPT_ERROR), or a memory/wall limit message. Pop
/// with `bh_call_end`. Why C: decoding allocates and raises.
bh_outcome bh_platform_set_rules(lua_State *L, const char *json, size_t len);

/// Calls the global `on_request(req, rules)` (read raw from the runtime's globals)
/// with `req` built from `request` exactly as a customer script gets it (a fresh
/// table every call) and the rules table, then converts the result into `*verdict`
/// with raw access only: nil is a pass; a table whose `action` is "block" is a
/// block (`status` an integer from 100 to 599, default 403; `body` a string or
/// nil); anything else raises "runtime.lua: bad verdict from on_request: ...".
/// Returns a `bh_outcome` like `bh_call_handle` (limits first). On success the body
/// view stays valid until `bh_call_end`; on failure `ctx->error` holds the message.
/// Why C: request pushing and the conversion allocate and raise.
bh_outcome bh_platform_call(lua_State *L, const bh_request *request, bh_verdict *verdict);

#ifdef __cplusplus
}
#endif

#endif
