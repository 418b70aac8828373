// json.encode / json.decode for scripts, and json.null.
//
// Decode is strict RFC 8259: one value, optional whitespace around it, strings in
// valid UTF-8 with no raw control characters, \u escapes with proper surrogate
// pairs, no leading zeros, no trailing commas, no comments, nesting at most
// BH_JSON_MAX_DEPTH. JSON null decodes to json.null (a light userdata), so keys and
// array slots holding null are kept.
//
// Encode: nil and json.null are null; a table whose keys are exactly 1..n (n > 0)
// is an array, any other table an object (keys must be strings or numbers; numbers
// become their decimal text); an empty table is {}, and json.empty_array (a light
// userdata, the lua-cjson convention) is []. Strings must be valid UTF-8.
// NaN and infinities, functions, threads and userdata are refused, and so are cycles
// and nesting deeper than BH_JSON_MAX_DEPTH. Tables are read raw: no metamethod of
// the value runs.
//
// Errors are Lua errors ("json.decode: ..."): scripts catch them with pcall.

#include "bh_internal.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BH_JSON_MAX_DEPTH 128

/// json.empty_array is the address of this byte: a light userdata no script can forge.
static const char bh_json_empty_array = 0;
/// Longest number token decode accepts (longer ones are refused, not truncated).
#define BH_JSON_MAX_NUMBER 320

// MARK: - UTF-8

size_t bh_utf8_sequence(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) {
        return 1;
    }
    if (c < 0xC2) {
        return 0;  // A continuation byte, or an overlong 2-byte form.
    }
    if (c < 0xE0) {
        return (n >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) {
            return 0;
        }
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F)) {
            return 0;  // Overlong, or a UTF-16 surrogate.
        }
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) {
            return 0;
        }
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)) {
            return 0;  // Overlong, or past U+10FFFF.
        }
        return 4;
    }
    return 0;
}

// MARK: - Output buffer

/// A growable output buffer whose storage is a userdata at stack slot `slot`, so
/// the collector frees it whatever error ends the encoding, and its memory counts
/// against the state's cap. (luaL_Buffer cannot be used: it needs the stack top
/// balanced between operations, and the traversal pushes keys and values.)
typedef struct bh_jbuf {
    lua_State *L;
    int slot;
    char *data;
    size_t len;
    size_t cap;
} bh_jbuf;

static void bh_jbuf_init(lua_State *L, bh_jbuf *b, size_t cap) {
    b->L = L;
    b->data = (char *)lua_newuserdatauv(L, cap, 0);
    b->slot = lua_gettop(L);
    b->len = 0;
    b->cap = cap;
}

static void bh_jbuf_grow(bh_jbuf *b, size_t extra) {
    size_t need = b->len + extra;
    if (need < b->len) {
        luaL_error(b->L, "json.encode: output too large");
    }
    size_t cap = b->cap * 2;
    if (cap < need) {
        cap = need;
    }
    char *data = (char *)lua_newuserdatauv(b->L, cap, 0);
    memcpy(data, b->data, b->len);
    lua_replace(b->L, b->slot);  // The old block is now garbage.
    b->data = data;
    b->cap = cap;
}

static void bh_jbuf_add(bh_jbuf *b, const char *s, size_t n) {
    if (b->cap - b->len < n) {
        bh_jbuf_grow(b, n);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void bh_jbuf_addc(bh_jbuf *b, char c) {
    if (b->cap == b->len) {
        bh_jbuf_grow(b, 1);
    }
    b->data[b->len++] = c;
}

#define bh_jbuf_literal(b, s) bh_jbuf_add((b), "" s, sizeof(s) - 1)

// MARK: - Encode

typedef struct bh_jenc {
    bh_jbuf out;
    int depth;
    /// The tables being encoded, outermost first: a cycle shows up as a repeat.
    const void *open[BH_JSON_MAX_DEPTH];
} bh_jenc;

static void bh_encode_value(lua_State *L, bh_jenc *e, int idx);

static void bh_encode_string(lua_State *L, bh_jenc *e, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    bh_jbuf_addc(&e->out, '"');
    size_t run = 0;  // Start of the bytes not yet copied.
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = bh_utf8_sequence(p + i, n - i);
            if (len == 0) {
                luaL_error(L, "json.encode: string is not valid UTF-8");
            }
            i += len;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        bh_jbuf_add(&e->out, s + run, i - run);
        switch (c) {
        case '"': bh_jbuf_literal(&e->out, "\\\""); break;
        case '\\': bh_jbuf_literal(&e->out, "\\\\"); break;
        case '\b': bh_jbuf_literal(&e->out, "\\b"); break;
        case '\f': bh_jbuf_literal(&e->out, "\\f"); break;
        case '\n': bh_jbuf_literal(&e->out, "\\n"); break;
        case '\r': bh_jbuf_literal(&e->out, "\\r"); break;
        case '\t': bh_jbuf_literal(&e->out, "\\t"); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            bh_jbuf_add(&e->out, esc, sizeof esc);
        }
        }
        i++;
        run = i;
    }
    bh_jbuf_add(&e->out, s + run, n - run);
    bh_jbuf_addc(&e->out, '"');
}

/// Writes the number at `idx` into `buf` (at least 64 bytes) and returns its length.
/// Floats get the shortest of 15–17 significant digits that reads back exactly; the
/// locale's decimal separator, if it is not '.', is put back to '.'.
static int bh_format_number(lua_State *L, int idx, char *buf, size_t size) {
    if (lua_isinteger(L, idx)) {
        return snprintf(buf, size, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
    }
    double x = (double)lua_tonumber(L, idx);
    if (isnan(x) || isinf(x)) {
        luaL_error(L, "json.encode: cannot encode NaN or infinity");
    }
    int len = 0;
    for (int precision = 15; precision <= 17; precision++) {
        len = snprintf(buf, size, "%.*g", precision, x);
        if (strtod(buf, NULL) == x) {
            break;
        }
    }
    for (int i = 0; i < len; i++) {
        char c = buf[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E')) {
            buf[i] = '.';
        }
    }
    return len;
}

static void bh_encode_table(lua_State *L, bh_jenc *e, int idx) {
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++) {
        if (e->open[i] == self) {
            luaL_error(L, "json.encode: a table contains itself");
        }
    }
    if (e->depth == BH_JSON_MAX_DEPTH) {
        luaL_error(L, "json.encode: nesting deeper than %d", BH_JSON_MAX_DEPTH);
    }
    e->open[e->depth++] = self;
    luaL_checkstack(L, 4, "json.encode");

    // A sequence has only the keys 1..n: count the keys and track the largest.
    lua_Integer count = 0, largest = 0;
    int sequence = 1;
    lua_pushnil(L);                                      // [..., nil]
    while (lua_next(L, idx)) {                           // [..., key, value]
        count++;
        if (sequence) {
            if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
                lua_Integer k = lua_tointeger(L, -2);
                if (k > largest) {
                    largest = k;
                }
            } else {
                sequence = 0;
            }
        }
        lua_pop(L, 1);                                   // [..., key]
    }                                                    // [...]

    if (sequence && count > 0 && largest == count) {
        bh_jbuf_addc(&e->out, '[');
        for (lua_Integer i = 1; i <= count; i++) {
            if (i > 1) {
                bh_jbuf_addc(&e->out, ',');
            }
            lua_rawgeti(L, idx, i);                      // [..., value]
            bh_encode_value(L, e, lua_gettop(L));
            lua_pop(L, 1);                               // [...]
        }
        bh_jbuf_addc(&e->out, ']');
    } else {
        bh_jbuf_addc(&e->out, '{');
        int first = 1;
        lua_pushnil(L);                                  // [..., nil]
        while (lua_next(L, idx)) {                       // [..., key, value]
            if (!first) {
                bh_jbuf_addc(&e->out, ',');
            }
            first = 0;
            int kt = lua_type(L, -2);
            if (kt == LUA_TSTRING) {
                size_t klen = 0;
                const char *k = lua_tolstring(L, -2, &klen);
                bh_encode_string(L, e, k, klen);
            } else if (kt == LUA_TNUMBER) {
                char buf[64];
                int len = bh_format_number(L, -2, buf, sizeof buf);
                bh_jbuf_addc(&e->out, '"');
                bh_jbuf_add(&e->out, buf, (size_t)len);
                bh_jbuf_addc(&e->out, '"');
            } else {
                luaL_error(L, "json.encode: object keys must be strings or numbers, not %s",
                           lua_typename(L, kt));
            }
            bh_jbuf_addc(&e->out, ':');
            bh_encode_value(L, e, lua_gettop(L));
            lua_pop(L, 1);                               // [..., key]
        }                                                // [...]
        bh_jbuf_addc(&e->out, '}');
    }
    e->depth--;
}

static void bh_encode_value(lua_State *L, bh_jenc *e, int idx) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        bh_jbuf_literal(&e->out, "null");
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) {
            bh_jbuf_literal(&e->out, "true");
        } else {
            bh_jbuf_literal(&e->out, "false");
        }
        break;
    case LUA_TNUMBER: {
        char buf[64];
        int len = bh_format_number(L, idx, buf, sizeof buf);
        bh_jbuf_add(&e->out, buf, (size_t)len);
        break;
    }
    case LUA_TSTRING: {
        size_t len = 0;
        const char *s = lua_tolstring(L, idx, &len);
        bh_encode_string(L, e, s, len);
        break;
    }
    case LUA_TTABLE:
        bh_encode_table(L, e, idx);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {  // json.null
            bh_jbuf_literal(&e->out, "null");
            break;
        }
        if (lua_touserdata(L, idx) == (void *)&bh_json_empty_array) {
            bh_jbuf_literal(&e->out, "[]");
            break;
        }
        /* fall through */
    default:
        luaL_error(L, "json.encode: cannot encode a %s value", luaL_typename(L, idx));
    }
}

/// `json.encode(value)` -> string.
static int bh_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    bh_jenc e;
    e.depth = 0;
    bh_jbuf_init(L, &e.out, 128);                        // [value, buffer]
    bh_encode_value(L, &e, 1);
    lua_pushlstring(L, e.out.data, e.out.len);           // [value, buffer, text]
    return 1;
}

// MARK: - Decode

typedef struct bh_jdec {
    lua_State *L;
    const unsigned char *s;
    size_t n;
    size_t pos;
    int depth;
} bh_jdec;

static BH_NORETURN bh_decode_error(bh_jdec *d, const char *what) {
    luaL_error(d->L, "json.decode: %s at byte %d", what, (int)(d->pos + 1));
    BH_UNREACHABLE();
}

static void bh_skip_space(bh_jdec *d) {
    while (d->pos < d->n) {
        unsigned char c = d->s[d->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        d->pos++;
    }
}

static void bh_decode_value(bh_jdec *d);

/// Reads 4 hex digits at d->pos.
static unsigned bh_decode_hex4(bh_jdec *d) {
    if (d->n - d->pos < 4) {
        bh_decode_error(d, "truncated \\u escape");
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = d->s[d->pos + (size_t)i];
        unsigned digit;
        if (c >= '0' && c <= '9') {
            digit = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            digit = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            digit = c - 'A' + 10;
        } else {
            bh_decode_error(d, "invalid \\u escape");
        }
        v = v * 16 + digit;
    }
    d->pos += 4;
    return v;
}

static void bh_add_utf8(luaL_Buffer *b, unsigned cp) {
    char out[4];
    size_t len;
    if (cp < 0x80) {
        out[0] = (char)cp;
        len = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    luaL_addlstring(b, out, len);
}

/// Decodes the string starting at the opening quote and pushes it.
static void bh_decode_string(bh_jdec *d) {
    lua_State *L = d->L;
    const unsigned char *s = d->s;
    size_t start = ++d->pos;
    // Fast path: no escapes, the string is pushed straight from the input.
    while (d->pos < d->n) {
        unsigned char c = s[d->pos];
        if (c == '"') {
            lua_pushlstring(L, (const char *)s + start, d->pos - start);
            d->pos++;
            return;
        }
        if (c == '\\') {
            break;
        }
        if (c < 0x20) {
            bh_decode_error(d, "control character in string");
        }
        if (c >= 0x80) {
            size_t len = bh_utf8_sequence(s + d->pos, d->n - d->pos);
            if (len == 0) {
                bh_decode_error(d, "invalid UTF-8 in string");
            }
            d->pos += len;
        } else {
            d->pos++;
        }
    }
    if (d->pos >= d->n) {
        bh_decode_error(d, "unterminated string");
    }
    // Slow path. Nothing else is pushed between buffinit and pushresult, as the
    // buffer needs.
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, (const char *)s + start, d->pos - start);
    for (;;) {
        if (d->pos >= d->n) {
            bh_decode_error(d, "unterminated string");
        }
        unsigned char c = s[d->pos];
        if (c == '"') {
            d->pos++;
            break;
        }
        if (c == '\\') {
            d->pos++;
            if (d->pos >= d->n) {
                bh_decode_error(d, "unterminated string");
            }
            unsigned char e = s[d->pos++];
            switch (e) {
            case '"': luaL_addchar(&b, '"'); break;
            case '\\': luaL_addchar(&b, '\\'); break;
            case '/': luaL_addchar(&b, '/'); break;
            case 'b': luaL_addchar(&b, '\b'); break;
            case 'f': luaL_addchar(&b, '\f'); break;
            case 'n': luaL_addchar(&b, '\n'); break;
            case 'r': luaL_addchar(&b, '\r'); break;
            case 't': luaL_addchar(&b, '\t'); break;
            case 'u': {
                unsigned cp = bh_decode_hex4(d);
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    bh_decode_error(d, "lone low surrogate in \\u escape");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (d->n - d->pos < 2 || s[d->pos] != '\\' || s[d->pos + 1] != 'u') {
                        bh_decode_error(d, "high surrogate without a low surrogate");
                    }
                    d->pos += 2;
                    unsigned low = bh_decode_hex4(d);
                    if (low < 0xDC00 || low > 0xDFFF) {
                        bh_decode_error(d, "high surrogate without a low surrogate");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                bh_add_utf8(&b, cp);
                break;
            }
            default:
                d->pos--;
                bh_decode_error(d, "invalid escape in string");
            }
            continue;
        }
        if (c < 0x20) {
            bh_decode_error(d, "control character in string");
        }
        size_t len = 1;
        if (c >= 0x80) {
            len = bh_utf8_sequence(s + d->pos, d->n - d->pos);
            if (len == 0) {
                bh_decode_error(d, "invalid UTF-8 in string");
            }
        }
        luaL_addlstring(&b, (const char *)s + d->pos, len);
        d->pos += len;
    }
    luaL_pushresult(&b);
}

static int bh_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static void bh_decode_number(bh_jdec *d) {
    const unsigned char *s = d->s;
    size_t start = d->pos;
    if (s[d->pos] == '-') {
        d->pos++;
    }
    if (d->pos < d->n && s[d->pos] == '0') {
        d->pos++;
    } else if (d->pos < d->n && s[d->pos] >= '1' && s[d->pos] <= '9') {
        while (d->pos < d->n && bh_is_digit(s[d->pos])) d->pos++;
    } else {
        bh_decode_error(d, "invalid number");
    }
    if (d->pos < d->n && s[d->pos] == '.') {
        d->pos++;
        if (d->pos >= d->n || !bh_is_digit(s[d->pos])) {
            bh_decode_error(d, "invalid number");
        }
        while (d->pos < d->n && bh_is_digit(s[d->pos])) d->pos++;
    }
    if (d->pos < d->n && (s[d->pos] == 'e' || s[d->pos] == 'E')) {
        d->pos++;
        if (d->pos < d->n && (s[d->pos] == '+' || s[d->pos] == '-')) {
            d->pos++;
        }
        if (d->pos >= d->n || !bh_is_digit(s[d->pos])) {
            bh_decode_error(d, "invalid number");
        }
        while (d->pos < d->n && bh_is_digit(s[d->pos])) d->pos++;
    }
    size_t len = d->pos - start;
    char buf[BH_JSON_MAX_NUMBER + 1];
    if (len > BH_JSON_MAX_NUMBER) {
        d->pos = start;
        bh_decode_error(d, "number too long");
    }
    memcpy(buf, s + start, len);
    buf[len] = '\0';
    // The grammar is checked above; Lua's own conversion gives integers where they
    // fit (floats past the integer range) and handles the locale's decimal point.
    if (lua_stringtonumber(d->L, buf) == 0) {
        d->pos = start;
        bh_decode_error(d, "invalid number");
    }
}

static void bh_decode_literal(bh_jdec *d, const char *word, size_t len) {
    if (d->n - d->pos < len || memcmp(d->s + d->pos, word, len) != 0) {
        bh_decode_error(d, "unexpected character");
    }
    d->pos += len;
}

static void bh_json_enter(bh_jdec *d) {
    if (++d->depth > BH_JSON_MAX_DEPTH) {
        bh_decode_error(d, "nesting too deep");
    }
    luaL_checkstack(d->L, 4, "json.decode");
}

static void bh_decode_array(bh_jdec *d) {
    lua_State *L = d->L;
    bh_json_enter(d);
    d->pos++;
    lua_newtable(L);                                     // [array]
    bh_skip_space(d);
    if (d->pos < d->n && d->s[d->pos] == ']') {
        d->pos++;
        d->depth--;
        return;
    }
    for (lua_Integer i = 1;; i++) {
        bh_decode_value(d);                              // [array, value]
        lua_rawseti(L, -2, i);                           // [array]
        bh_skip_space(d);
        if (d->pos >= d->n) {
            bh_decode_error(d, "unterminated array");
        }
        unsigned char c = d->s[d->pos++];
        if (c == ']') {
            break;
        }
        if (c != ',') {
            d->pos--;
            bh_decode_error(d, "expected ',' or ']'");
        }
    }
    d->depth--;
}

static void bh_decode_object(bh_jdec *d) {
    lua_State *L = d->L;
    bh_json_enter(d);
    d->pos++;
    lua_newtable(L);                                     // [object]
    bh_skip_space(d);
    if (d->pos < d->n && d->s[d->pos] == '}') {
        d->pos++;
        d->depth--;
        return;
    }
    for (;;) {
        bh_skip_space(d);
        if (d->pos >= d->n || d->s[d->pos] != '"') {
            bh_decode_error(d, "expected a string key");
        }
        bh_decode_string(d);                             // [object, key]
        bh_skip_space(d);
        if (d->pos >= d->n || d->s[d->pos] != ':') {
            bh_decode_error(d, "expected ':'");
        }
        d->pos++;
        bh_decode_value(d);                              // [object, key, value]
        lua_rawset(L, -3);                               // [object]
        bh_skip_space(d);
        if (d->pos >= d->n) {
            bh_decode_error(d, "unterminated object");
        }
        unsigned char c = d->s[d->pos++];
        if (c == '}') {
            break;
        }
        if (c != ',') {
            d->pos--;
            bh_decode_error(d, "expected ',' or '}'");
        }
    }
    d->depth--;
}

/// Decodes one value at d->pos (after optional whitespace) and pushes it.
static void bh_decode_value(bh_jdec *d) {
    bh_skip_space(d);
    if (d->pos >= d->n) {
        bh_decode_error(d, "unexpected end of input");
    }
    switch (d->s[d->pos]) {
    case '{': bh_decode_object(d); break;
    case '[': bh_decode_array(d); break;
    case '"': bh_decode_string(d); break;
    case 't': bh_decode_literal(d, "true", 4); lua_pushboolean(d->L, 1); break;
    case 'f': bh_decode_literal(d, "false", 5); lua_pushboolean(d->L, 0); break;
    case 'n': bh_decode_literal(d, "null", 4); lua_pushlightuserdata(d->L, NULL); break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        bh_decode_number(d);
        break;
    default:
        bh_decode_error(d, "unexpected character");
    }
}

/// `json.decode(text)` -> value.
static int bh_json_decode(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING) {
        return luaL_typeerror(L, 1, "string");
    }
    bh_jdec d;
    size_t n = 0;
    d.L = L;
    d.s = (const unsigned char *)lua_tolstring(L, 1, &n);
    d.n = n;
    d.pos = 0;
    d.depth = 0;
    lua_settop(L, 1);
    bh_decode_value(&d);                                 // [text, value]
    bh_skip_space(&d);
    if (d.pos != d.n) {
        bh_decode_error(&d, "unexpected data after the value");
    }
    return 1;
}

void bh_push_json(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"encode", bh_json_encode},
        {"decode", bh_json_decode},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);                           // [json]
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, (void *)&bh_json_empty_array);
    lua_setfield(L, -2, "empty_array");
}
