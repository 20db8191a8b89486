-- GET one page of 10 messages (echo on, so the producer's messages are visible).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local queue = os.getenv("QUEUE") or "bench"
local path = "/v2/queues/" .. queue .. "/messages?limit=10&echo=true"

function init(args)
  common.set_headers(common.uuid(7))
end

function request()
  return wrk.format("GET", path)
end
