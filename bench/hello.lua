-- The hello handler of scripts/bench. This one function runs unchanged in all three
-- servers: each server's adapter (bulkhead.lua.in, nginx.conf.in, magnet.lua.in)
-- calls it with the request path and sends back what it returns, as text/plain
-- with a Content-Length.
return function(path)
  return "hello\n"
end
