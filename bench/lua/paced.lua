-- Fixed-rate pacing (Debian's wrk has no -R): one schedule per thread hands every request
-- the next slot, 1/RATE apart, whichever connection sends it. wrk's timers have 1 ms
-- granularity, so a send can leave up to 1 ms early; the schedule keeps the mean rate
-- exact. A slot missed because every connection was busy is sent at once (catch-up) and
-- counted in `late`; past 100 ms behind the schedule restarts. Latency is measured by
-- wrk from the actual send, so a stall longer than connections/RATE is under-reported
-- (coordinated omission): `late` > 0 says it happened.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *out);
]])
local clock = ffi.new("bench_timespec")
local next_slot = nil

local function now_ms()
    ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

function delay()
    local now = now_ms()
    local interval = 1000 / rate
    if next_slot == nil or now - next_slot > 100 then
        next_slot = now
    end
    local slot = next_slot
    next_slot = slot + interval
    if now - slot > 1 then
        late = late + 1
        worst_late = math.max(worst_late, now - slot)
    end
    return math.max(0, slot - now)
end
