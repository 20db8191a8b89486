-- Shared by the scenarios: Zaqar headers, and a per-thread client id.
local M = {}

-- Adds to wrk.headers in place: replacing the table would drop the Host header wrk sets.
function M.set_headers(client_id)
  wrk.headers["Client-ID"] = client_id
  wrk.headers["X-Project-ID"] = "bench"
  wrk.headers["Content-Type"] = "application/json"
end

function M.uuid(seed)
  math.randomseed(seed)
  local t = "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"
  return (string.gsub(t, "[xy]", function(c)
    local v = (c == "x") and math.random(0, 0xf) or math.random(8, 0xb)
    return string.format("%x", v)
  end))
end

return M
