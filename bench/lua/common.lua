-- Shared by every workload. The bench prepends the constants (READ_PATH, ORDER_PATH,
-- TOKEN, BODY) and appends one workload file, plus paced.lua for the fixed-rate runs.
-- Arguments after `--`: RATE (requests/s for the whole run, 0 = as fast as possible)
-- and NONCE (a number that makes the cold workload's customer ids new on every run).
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    rate = tonumber(args[1]) or 0
    nonce = tonumber(args[2]) or 0
    late = 0 -- paced runs: sends that left more than 1 ms after their slot
    worst_late = 0
    wrk.headers["Authorization"] = "Bearer " .. TOKEN
    workload_init()
end

function done(summary, latency, requests)
    local slipped, worst = 0, 0
    for _, thread in ipairs(threads) do
        slipped = slipped + (thread:get("late") or 0)
        worst = math.max(worst, thread:get("worst_late") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d"
            .. " p50_us=%d p99_us=%d p999_us=%d max_us=%d late=%d worst_late_ms=%.1f\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
        slipped, worst))
end
