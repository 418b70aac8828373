// Loading a script, running its chunk, and calling `handle(req)`: the request is
// pushed and the response converted inside the same protected call, so every
// allocation and every error of the conversion is caught like the script's own.

#include "bh_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *bh_name(const bh_context *ctx) {
    return ctx->chunk_name != NULL ? ctx->chunk_name : "?";
}

// MARK: - Outcome

/// Points ctx->error at the message of the error value at `idx`, without allocating
/// Lua memory (the caller runs outside any protected call), so that it always
/// starts with the chunk name: a string that already does ("hello.lua:3: ...",
/// what `error` adds) is used in place — it stays anchored on the stack until
/// bh_call_end — and anything else is written into ctx->message with "name: "
/// before it (`error("x", 0)`, "C stack overflow", a number). Other values are
/// described, never converted through a metamethod.
static void bh_error_from_value(lua_State *L, bh_context *ctx, int idx) {
    const char *name = bh_name(ctx);
    int t = lua_type(L, idx);
    int n;
    if (t == LUA_TSTRING) {
        size_t len = 0;
        const char *s = lua_tolstring(L, idx, &len);
        size_t nlen = strlen(name);
        if (len > nlen && memcmp(s, name, nlen) == 0 && s[nlen] == ':') {
            ctx->error.ptr = s;
            ctx->error.len = len < BH_MESSAGE_MAX ? len : BH_MESSAGE_MAX;
            return;
        }
        int shown = len < BH_MESSAGE_MAX ? (int)len : BH_MESSAGE_MAX;
        n = snprintf(ctx->message, sizeof ctx->message, "%s: %.*s", name, shown, s);
    } else if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
        n = snprintf(ctx->message, sizeof ctx->message, "%s: " LUA_INTEGER_FMT, name,
                     (LUAI_UACINT)lua_tointeger(L, idx));
    } else if (t == LUA_TNUMBER) {
        n = snprintf(ctx->message, sizeof ctx->message, "%s: %.14g", name, (double)lua_tonumber(L, idx));
    } else {
        n = snprintf(ctx->message, sizeof ctx->message, "%s: error object is a %s value",
                     name, lua_typename(L, t));
    }
    ctx->error.ptr = ctx->message;
    ctx->error.len = n < 0 ? 0 : ((size_t)n < sizeof ctx->message ? (size_t)n : sizeof ctx->message - 1);
}

static void bh_error_text(bh_context *ctx, const char *text) {
    ctx->error.ptr = text;
    ctx->error.len = strlen(text);
}

/// The outcome of a protected call that returned `status`. The CPU and wall limits
/// come first: once hit, the call fails with them whatever the script did next
/// (caught the error, returned normally, raised something else).
bh_outcome bh_finish(lua_State *L, bh_context *ctx, int status) {
    bh_call_leave(ctx);
    // The hook sees the deadline only while Lua code runs; a call that spent its
    // time inside one C function (string.find with a pathological pattern) and then
    // returned at once is caught here. One clock read per call, kept for the host.
    if (ctx->deadline_ns != 0 && !(ctx->hit & BH_HIT_STOP)) {
        ctx->finished_ns = bh_now_ns();
        if (ctx->finished_ns >= ctx->deadline_ns) {
            ctx->hit |= BH_HIT_WALL;
            snprintf(ctx->limit_message, sizeof ctx->limit_message, "%s: wall-clock limit exceeded",
                     bh_name(ctx));
        }
    }
    if (ctx->hit & BH_HIT_CPU) {
        bh_error_text(ctx, ctx->limit_message);
        return BH_LIMIT_CPU;
    }
    if (ctx->hit & BH_HIT_WALL) {
        bh_error_text(ctx, ctx->limit_message);
        return BH_LIMIT_WALL;
    }
    if (status == LUA_OK) {
        return BH_OK;
    }
    // A memory error the script caught and raised again (as a string) is still one.
    if (status == LUA_ERRMEM || (ctx->hit & BH_HIT_MEMORY)) {
        if (ctx->mem_limit != 0) {
            snprintf(ctx->message, sizeof ctx->message, "%s: memory limit of %zu bytes exceeded",
                     bh_name(ctx), ctx->mem_limit);
        } else {
            snprintf(ctx->message, sizeof ctx->message, "%s: out of memory", bh_name(ctx));
        }
        bh_error_text(ctx, ctx->message);
        return BH_LIMIT_MEMORY;
    }
    bh_error_from_value(L, ctx, -1);
    return status == LUA_ERRSYNTAX ? BH_SYNTAX : BH_SCRIPT_ERROR;
}

/// Raises "name: message" (for errors that have no script line to point at).
BH_NORETURN bh_fail(lua_State *L, bh_context *ctx, const char *format, ...) {
    va_list args;
    va_start(args, format);
    lua_pushfstring(L, "%s: ", bh_name(ctx));
    lua_pushvfstring(L, format, args);
    va_end(args);
    lua_concat(L, 2);
    lua_error(L);
    BH_UNREACHABLE();
}

/// Replaces the name on top of the stack with the global of that name, read raw
/// from the sandbox globals (a metatable the script set on _G is not consulted),
/// and raises unless it is a function.
static void bh_require_function(lua_State *L, bh_context *ctx, const char *signature) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);    // [name, G]
    lua_rotate(L, -2, 1);                                    // [G, name]
    if (lua_rawget(L, -2) != LUA_TFUNCTION) {                // [G, value]
        bh_fail(L, ctx, "script does not define function %s", signature);
    }
    lua_remove(L, -2);                                       // [function]
}

void bh_push_required_function(lua_State *L, bh_context *ctx, const char *name,
                               const char *signature) {
    lua_pushstring(L, name);
    bh_require_function(L, ctx, signature);
}

void bh_push_required_key(lua_State *L, bh_context *ctx, int key, const char *signature) {
    bh_push_key(L, ctx, key);
    bh_require_function(L, ctx, signature);
}

static const char *const bh_key_names[BH_KEY_COUNT] = {
    "method", "path", "query", "body", "headers", "handle", "on_request", "", "GET",
};
_Static_assert(BH_KEY_COUNT <= sizeof ((bh_context *)0)->keys / sizeof (int), "bh_context.keys is too small");

void bh_intern_keys(lua_State *L, bh_context *ctx) {
    for (int key = 0; key < BH_KEY_COUNT; key++) {
        lua_pushstring(L, bh_key_names[key]);
        ctx->keys[key] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

// MARK: - Loading

bh_outcome bh_load(lua_State *L, const char *source, size_t len) {
    bh_context *ctx = bh_context_of(L);
    ctx->call_base = lua_gettop(L);
    // "=" makes the name appear as given in messages ("hello.lua:3: ..."), where "@"
    // would treat it as a file path.
    char name[256];
    snprintf(name, sizeof name, "=%s", bh_name(ctx));
    // Text only: a precompiled chunk is refused, always.
    int status = luaL_loadbufferx(L, source, len, name, "t");
    if (status == LUA_OK) {
        return BH_OK;                                       // [chunk]
    }
    return bh_finish(L, ctx, status);                       // [message]
}

typedef struct bh_chunk_args {
    const char *name;
    const char *signature;
} bh_chunk_args;

static int bh_chunk_body(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    const bh_chunk_args *args = (const bh_chunk_args *)lua_touserdata(L, 1);
    lua_remove(L, 1);                                        // [chunk]
    lua_call(L, 0, 0);                                       // []
    if (args->name != NULL && !(ctx->hit & BH_HIT_STOP)) {
        bh_push_required_function(L, ctx, args->name, args->signature);
    }
    return 0;
}

bh_outcome bh_run_chunk(lua_State *L, const char *required, const char *signature) {
    bh_context *ctx = bh_context_of(L);
    bh_chunk_args args = {required, signature != NULL ? signature : required};
    ctx->call_base = lua_gettop(L) - 1;                      // [chunk]
    lua_pushcfunction(L, bh_chunk_body);
    lua_pushlightuserdata(L, &args);
    lua_rotate(L, -3, 2);                                    // [body, args, chunk]
    bh_call_enter(L, ctx);
    int status = lua_pcall(L, 2, 0, 0);
    return bh_finish(L, ctx, status);
}

// MARK: - Request

static void bh_push_bytes(lua_State *L, bh_bytes b) {
    lua_pushlstring(L, b.len != 0 ? (const char *)b.ptr : "", b.len);
}

/// The same for a value that is often empty (or GET), pushed then from the
/// interned keys.
static void bh_push_value(lua_State *L, const bh_context *ctx, bh_bytes b) {
    if (b.len == 0) {
        bh_push_key(L, ctx, BH_KEY_EMPTY);
    } else if (b.len == 3 && memcmp(b.ptr, "GET", 3) == 0) {
        bh_push_key(L, ctx, BH_KEY_GET);
    } else {
        lua_pushlstring(L, (const char *)b.ptr, b.len);
    }
}

/// Pushes a header name in lower case. Names already in lower case (the usual
/// case, HTTP/2 and most clients) are pushed straight from the buffer.
static void bh_push_lower(lua_State *L, bh_bytes b) {
    const unsigned char *p = (const unsigned char *)b.ptr;
    size_t n = b.len;
    size_t first = 0;
    while (first < n && !(p[first] >= 'A' && p[first] <= 'Z')) {
        first++;
    }
    if (first == n) {
        bh_push_bytes(L, b);
        return;
    }
    char small[128];
    luaL_Buffer buffer;
    char *out = n <= sizeof small ? small : luaL_buffinitsize(L, &buffer, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c);
    }
    if (n <= sizeof small) {
        lua_pushlstring(L, small, n);
    } else {
        luaL_pushresultsize(&buffer, n);
    }
}

/// Pushes the `req` table: method, path, query, body, and headers with lower-case
/// names, repeated names joined with ", " in arrival order.
void bh_push_request(lua_State *L, const bh_request *r) {
    const bh_context *ctx = bh_context_of(L);
    luaL_checkstack(L, 8, "request");
    lua_createtable(L, 0, 5);                                // [req]
    bh_push_key(L, ctx, BH_KEY_METHOD);
    bh_push_value(L, ctx, r->method);
    lua_rawset(L, -3);
    bh_push_key(L, ctx, BH_KEY_PATH);
    bh_push_bytes(L, r->path);
    lua_rawset(L, -3);
    bh_push_key(L, ctx, BH_KEY_QUERY);
    bh_push_value(L, ctx, r->query);
    lua_rawset(L, -3);
    bh_push_key(L, ctx, BH_KEY_BODY);
    bh_push_value(L, ctx, r->body);
    lua_rawset(L, -3);
    bh_push_key(L, ctx, BH_KEY_HEADERS);                     // [req, "headers"]
    int hint = r->header_count < 64 ? (int)r->header_count : 64;
    lua_createtable(L, 0, hint);                             // [req, "headers", headers]
    const bh_header *headers = (const bh_header *)r->headers;
    for (size_t i = 0; i < r->header_count; i++) {
        bh_push_lower(L, headers[i].name);                   // [..., headers, name]
        lua_pushvalue(L, -1);                                // [..., headers, name, name]
        if (lua_rawget(L, -3) == LUA_TNIL) {                 // [..., headers, name, nil]
            lua_pop(L, 1);
            bh_push_bytes(L, headers[i].value);              // [..., headers, name, value]
        } else {                                             // [..., headers, name, earlier]
            lua_pushliteral(L, ", ");
            bh_push_bytes(L, headers[i].value);
            lua_concat(L, 3);                                // [..., headers, name, joined]
        }
        lua_rawset(L, -3);                                   // [req, "headers", headers]
    }
    lua_rawset(L, -3);                                       // [req]
}

// MARK: - Response

/// RFC 9110 token characters, the only ones allowed in a header name.
static int bh_is_token_char(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void bh_check_header(lua_State *L, bh_context *ctx, const char *name, size_t nlen,
                            const char *value, size_t vlen) {
    if (nlen == 0) {
        bh_fail(L, ctx, "bad response from handle: empty header name");
    }
    for (size_t i = 0; i < nlen; i++) {
        if (!bh_is_token_char((unsigned char)name[i])) {
            bh_fail(L, ctx, "bad response from handle: invalid character in header name '%s'", name);
        }
    }
    // CR, LF and NUL would split or end the header line (response splitting); the
    // other control characters (HTAB aside) are not allowed in a field value either.
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            bh_fail(L, ctx, "bad response from handle: control character in the value of header '%s'", name);
        }
    }
}

/// Whether `name` is a header bulkhead sets itself on every data-plane response:
/// `x-bulkhead-*` (pool, worker, error kind) and `x-request-id`, in any case. A
/// script that could set them would forge an error kind, a request id or a pool.
/// Cheap on the usual response: most names fail the length or the first two bytes.
static int bh_is_reserved_header(const char *name, size_t nlen) {
    static const char prefix[] = "x-bulkhead-";
    static const char request_id[] = "x-request-id";
    if (nlen < sizeof prefix - 1 || (name[0] | 0x20) != 'x' || name[1] != '-') {
        return 0;
    }
    // Header names are tokens (checked before): OR-ing 0x20 lower-cases letters and
    // maps no other token character onto a letter or '-'.
    size_t i = 2;
    while (i < sizeof prefix - 1 && (name[i] | 0x20) == prefix[i]) {
        i++;
    }
    if (i == sizeof prefix - 1) {
        return 1;
    }
    if (nlen != sizeof request_id - 1) {
        return 0;
    }
    for (i = 2; i < nlen; i++) {
        if ((name[i] | 0x20) != request_id[i]) {
            return 0;
        }
    }
    return 1;
}

/// Converts the response at `idx` into ctx->response, reading the script's tables
/// raw (lua_rawget, lua_next): none of its metamethods runs. Numbers given as
/// header values are converted on copies that stay on the stack as anchors; every
/// other view points into strings held by the response table, itself on the stack.
static void bh_convert_response(lua_State *L, bh_context *ctx, int idx) {
    bh_response *response = &ctx->response;
    response->header_count = 0;
    int type = lua_type(L, idx);
    if (type == LUA_TSTRING) {
        response->status = 200;
        response->headers[0].name.ptr = "content-type";
        response->headers[0].name.len = 12;
        response->headers[0].value.ptr = "text/plain";
        response->headers[0].value.len = 10;
        response->header_count = 1;
        response->body.ptr = lua_tolstring(L, idx, &response->body.len);
        return;
    }
    if (type != LUA_TTABLE) {
        bh_fail(L, ctx, "bad response from handle: expected a string or a table, got %s",
                lua_typename(L, type));
    }
    luaL_checkstack(L, BH_MAX_RESPONSE_HEADERS + 8, "response");

    lua_pushliteral(L, "status");
    int status_type = lua_rawget(L, idx);                    // [..., status]
    if (status_type == LUA_TNIL) {
        response->status = 200;
    } else {
        int exact = 0;
        lua_Integer status = lua_tointegerx(L, -1, &exact);
        if (status_type != LUA_TNUMBER || !exact || status < 100 || status > 599) {
            bh_fail(L, ctx, "bad response from handle: status must be an integer from 200 to 599");
        }
        // A 1xx is an interim response: the client (or the ingress) reads the final
        // response after it, so a 1xx with a body let the body pose as that response.
        // Only the server itself sends one (100 Continue), never a script.
        if (status < 200) {
            bh_fail(L, ctx, "bad response from handle: status %d is an interim (1xx) response; "
                    "status must be an integer from 200 to 599", (int)status);
        }
        response->status = (int)status;
    }
    lua_pop(L, 1);                                           // [...]

    lua_pushliteral(L, "headers");
    int headers_type = lua_rawget(L, idx);                   // [..., headers]
    if (headers_type == LUA_TTABLE) {
        int headers = lua_gettop(L);
        lua_pushnil(L);                                      // [..., headers, nil]
        while (lua_next(L, headers)) {                       // [..., headers, anchors..., key, value]
            if (lua_type(L, -2) != LUA_TSTRING) {
                bh_fail(L, ctx, "bad response from handle: header names must be strings");
            }
            if (response->header_count == BH_MAX_RESPONSE_HEADERS) {
                bh_fail(L, ctx, "bad response from handle: more than %d headers", BH_MAX_RESPONSE_HEADERS);
            }
            size_t nlen = 0, vlen = 0;
            const char *name = lua_tolstring(L, -2, &nlen);  // A string: not converted.
            const char *value;
            int value_type = lua_type(L, -1);
            if (value_type == LUA_TTABLE) {
                // A list of strings: one header line each (two Set-Cookie, say).
                // The strings stay referenced by the list, itself in `headers`.
                if (bh_is_reserved_header(name, nlen)) {
                    bh_fail(L, ctx, "bad response from handle: header '%s' is reserved "
                            "(bulkhead sets x-bulkhead-* and x-request-id itself)", name);
                }
                lua_Unsigned count = lua_rawlen(L, -1);
                // A list has the keys 1..n and no other: a table with any other
                // key is not one.
                lua_Unsigned keys = 0;
                lua_pushnil(L);                              // [..., key, list, nil]
                while (lua_next(L, -2)) {                    // [..., key, list, k, v]
                    lua_pop(L, 1);
                    if (++keys > count) {
                        lua_pop(L, 1);
                        break;
                    }
                }
                if (keys != count) {
                    bh_fail(L, ctx, "bad response from handle: the value of header '%s' must be a string "
                            "or a list of strings, got a table that is not a list", name);
                }
                for (lua_Unsigned i = 1; i <= count; i++) {
                    if (lua_rawgeti(L, -1, (lua_Integer)i) != LUA_TSTRING) {
                        bh_fail(L, ctx, "bad response from handle: the values of header '%s' must be strings, got %s",
                                name, luaL_typename(L, -1));
                    }
                    if (response->header_count == BH_MAX_RESPONSE_HEADERS) {
                        bh_fail(L, ctx, "bad response from handle: more than %d headers", BH_MAX_RESPONSE_HEADERS);
                    }
                    value = lua_tolstring(L, -1, &vlen);
                    bh_check_header(L, ctx, name, nlen, value, vlen);
                    bh_header *h = &response->headers[response->header_count++];
                    h->name.ptr = name;
                    h->name.len = nlen;
                    h->value.ptr = value;
                    h->value.len = vlen;
                    lua_pop(L, 1);                           // [..., key, list]
                }
                lua_pop(L, 1);                               // [..., headers, anchors..., key]
                continue;
            }
            if (value_type == LUA_TSTRING) {
                value = lua_tolstring(L, -1, &vlen);
            } else if (value_type == LUA_TNUMBER) {
                lua_pushvalue(L, -1);                        // [..., key, value, copy]
                value = lua_tolstring(L, -1, &vlen);         // The copy becomes a string.
                lua_rotate(L, -3, 1);                        // [..., copy, key, value]
            } else {
                bh_fail(L, ctx, "bad response from handle: the value of header '%s' must be a string "
                        "or a list of strings, got %s", name, lua_typename(L, value_type));
            }
            bh_check_header(L, ctx, name, nlen, value, vlen);
            if (bh_is_reserved_header(name, nlen)) {
                bh_fail(L, ctx, "bad response from handle: header '%s' is reserved "
                        "(bulkhead sets x-bulkhead-* and x-request-id itself)", name);
            }
            bh_header *h = &response->headers[response->header_count++];
            h->name.ptr = name;
            h->name.len = nlen;
            h->value.ptr = value;
            h->value.len = vlen;
            lua_pop(L, 1);                                   // [..., headers, anchors..., key]
        }                                                    // [..., headers, anchors...]
    } else if (headers_type != LUA_TNIL) {
        bh_fail(L, ctx, "bad response from handle: headers must be a table, got %s",
                lua_typename(L, headers_type));
    }

    lua_pushliteral(L, "body");
    int body_type = lua_rawget(L, idx);                      // [..., body]
    if (body_type == LUA_TSTRING) {
        response->body.ptr = lua_tolstring(L, -1, &response->body.len);
    } else if (body_type == LUA_TNIL) {
        response->body.ptr = "";
        response->body.len = 0;
    } else {
        bh_fail(L, ctx, "bad response from handle: body must be a string, got %s",
                lua_typename(L, body_type));
    }
    // 204 and 304 have no content (RFC 9110 §15.3.5, §15.4.5; RFC 9112 §6.3): the
    // script's body is dropped here, in the conversion the worker and `bulkhead try`
    // share, so neither can send it; both also leave out Content-Length for them.
    if (response->status == 204 || response->status == 304) {
        response->body.ptr = "";
        response->body.len = 0;
    }
}

// MARK: - Calling handle

static int bh_handle_body(lua_State *L) {
    bh_context *ctx = bh_context_of(L);
    bh_push_required_key(L, ctx, BH_KEY_HANDLE, "handle(req)"); // [handle]
    bh_push_request(L, ctx->request);                        // [handle, req]
    lua_call(L, 1, 1);                                       // [result]
    if (!(ctx->hit & BH_HIT_STOP)) {
        bh_convert_response(L, ctx, 1);                      // [result, anchors...]
    }
    // Everything stays on the stack as results of the protected call, so the
    // response views stay anchored until bh_call_end.
    return lua_gettop(L);
}

bh_outcome bh_call_handle(lua_State *L, const bh_request *request) {
    bh_context *ctx = bh_context_of(L);
    ctx->call_base = lua_gettop(L);
    ctx->request = request;
    lua_pushcfunction(L, bh_handle_body);
    bh_call_enter(L, ctx);
    int status = lua_pcall(L, 0, LUA_MULTRET, 0);
    ctx->request = NULL;
    return bh_finish(L, ctx, status);
}
