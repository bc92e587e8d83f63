-- Pass-through reads: GET a customer's subscriptions (not gated: no lookup, no body check).
function workload_init()
    wrk.method = "GET"
    wrk.path = READ_PATH
end
