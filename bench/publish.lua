-- wrk script for scenario (f) of bench/compare-nchan.sh: POST one event per
-- request, with a JSON body of about WRK_PAYLOAD bytes (default 128).
-- The URL (nchan /pub?id=KEY or watchbus /v1/events?key=KEY) is wrk's argument.
--
-- WRK_IDEMPOTENCY_KEYS=1 gives every request an Idempotency-Key of its own,
-- as a publisher that retries sends them (watchbus only):
--
--   WRK_IDEMPOTENCY_KEYS=1 wrk -t2 -c8 -d10s -s bench/publish.lua \
--     'http://127.0.0.1:8080/v1/events?key=bench'
local size = tonumber(os.getenv("WRK_PAYLOAD") or "128")
local pad = math.max(size - 12, 1)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pad":"' .. string.rep("x", pad) .. '"}'

if os.getenv("WRK_IDEMPOTENCY_KEYS") == "1" then
  local prefix
  local count = 0

  -- Each thread has its own random prefix, so no two threads send one key.
  function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
    prefix = string.format("%08x", math.random(0, 0x7fffffff))
  end

  function request()
    count = count + 1
    wrk.headers["Idempotency-Key"] = prefix .. "-" .. count
    return wrk.format()
  end
end
