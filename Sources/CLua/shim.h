#ifndef BULKHEAD_CLUA_SHIM_H
#define BULKHEAD_CLUA_SHIM_H

// The Lua 5.4 C API as Debian ships it (headers in /usr/include/lua5.4, found
// through pkg-config). Macros and variadic functions that Swift cannot call are
// wrapped in CLuaSandbox, not here: this module is only the system library.
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

#endif
