-- wrk script for scenario (f) of bench/compare-nchan.sh: POST one event per
-- request, with a JSON body of about WRK_PAYLOAD bytes (default 128).
-- The URL (nchan /pub?id=KEY or watchbus /v1/events?key=KEY) is wrk's argument.
local size = tonumber(os.getenv("WRK_PAYLOAD") or "128")
local pad = math.max(size - 12, 1)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pad":"' .. string.rep("x", pad) .. '"}'
