-- Gated orders, cold cache: every call names a new customer, so the gate looks each one up
-- (GET .../agreements upstream, answered with an MCA) before forwarding the order.
local count = 0

function workload_init()
    wrk.method = "POST"
    wrk.body = BODY
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    count = count + 1
    local customer = string.format("%08x-0000-4000-8000-%012x", nonce, count)
    return wrk.format(nil, "/v1/customers/" .. customer .. "/orders")
end
