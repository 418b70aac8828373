-- The heavier handler of scripts/bench, run unchanged by all three servers (see
-- hello.lua for how each server calls it). It builds a table of 20 fields whose
-- values depend on the request, formats every key/value pair with string.format,
-- and joins the pairs and the request path with table.concat, so the body changes
-- with the request and no server can answer from a cache. Keys are visited in a
-- fixed order (not pairs()), so LuaJIT and Lua 5.4 produce the same bytes.
--
-- For "/heavy/a" (8 bytes) the body is
--   "field1=8&field2=16&...&field20=160&/heavy/a\n"
return function(path)
  local length = #path
  local record = {}
  for i = 1, 20 do
    record["field" .. i] = i * length
  end
  local parts = {}
  for i = 1, 20 do
    local key = "field" .. i
    parts[i] = string.format("%s=%d", key, record[key])
  end
  parts[21] = path
  return table.concat(parts, "&") .. "\n"
end
