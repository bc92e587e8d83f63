-- Gated orders, warm cache: one customer, so every call after the first is a cache hit.
function workload_init()
    wrk.method = "POST"
    wrk.path = ORDER_PATH
    wrk.body = BODY
    wrk.headers["Content-Type"] = "application/json"
end
