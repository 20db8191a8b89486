-- POST one message whose body carries the time it was sent (UNIX seconds, microsecond precision,
-- through LuaJIT's ffi), so that a subscriber can tell the lag from post to receipt.
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local queue = os.getenv("QUEUE") or "bench"
local path = "/v2/queues/" .. queue .. "/messages"

function setup(thread)
  thread:set("id", math.random(1, 1e9))
end

function init(args)
  common.set_headers(common.uuid(id or 1))
end

function request()
  ffi.C.gettimeofday(tv, nil)
  local now = string.format("%d.%06d", tonumber(tv.tv_sec), tonumber(tv.tv_usec))
  return wrk.format("POST", path, nil, '{"messages": [{"ttl": 3600, "body": {"t": ' .. now .. '}}]}')
end
