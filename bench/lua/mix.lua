-- 90/10 read/order mix: every tenth call is a gated order (warm cache), the rest reads.
local read_request, order_request
local count = 0

function workload_init()
    read_request = wrk.format("GET", READ_PATH)
    wrk.headers["Content-Type"] = "application/json"
    order_request = wrk.format("POST", ORDER_PATH, nil, BODY)
end

function request()
    count = count + 1
    if count % 10 == 0 then
        return order_request
    end
    return read_request
end
