-- Consumers: claim up to 10 messages, delete each with its claim id, then claim again.
-- Counts claimed messages and deletes sent per thread; done() prints the totals, which the
-- harness reads (wrk's own "Non-2xx" line tells whether any delete failed).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local queue = os.getenv("QUEUE") or "bench"
local claim_path = "/v2/queues/" .. queue .. "/claims?limit=10"
local claim_body = '{"ttl": 300, "grace": 60}'
local threads = {}
local pending = {}
local claimed, deletes = 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  common.set_headers(common.uuid(11))
end

function request()
  local nxt = table.remove(pending)
  if nxt then
    deletes = deletes + 1
    wrk.thread:set("deletes", deletes)
    return wrk.format("DELETE", nxt)
  end
  return wrk.format("POST", claim_path, nil, claim_body)
end

function response(status, headers, body)
  if status == 201 then
    for href in string.gmatch(body, '"href":"([^"]+claim_id=[0-9a-f]+)"') do
      table.insert(pending, href)
      claimed = claimed + 1
    end
    wrk.thread:set("claimed", claimed)
  end
end

function done(summary, latency, requests)
  local c, d = 0, 0
  for _, t in ipairs(threads) do
    c = c + (t:get("claimed") or 0)
    d = d + (t:get("deletes") or 0)
  end
  io.write(string.format("CLAIMED %d DELETES %d\n", c, d))
end
