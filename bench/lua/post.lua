-- POST `BATCH` messages per request to one queue (BATCH from the environment, default 1).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local batch = tonumber(os.getenv("BATCH") or "1")
local queue = os.getenv("QUEUE") or "bench"

local parts = {}
for i = 1, batch do
  parts[i] = '{"ttl": 3600, "body": {"event": "order.created", "n": ' .. i .. ', "pad": "'
    .. string.rep("x", 64) .. '"}}'
end
local body = '{"messages": [' .. table.concat(parts, ",") .. ']}'
local path = "/v2/queues/" .. queue .. "/messages"

function setup(thread)
  thread:set("id", math.random(1, 1e9))
end

function init(args)
  common.set_headers(common.uuid(id or 1))
end

function request()
  return wrk.format("POST", path, nil, body)
end
