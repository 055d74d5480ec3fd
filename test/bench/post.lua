-- wrk script: POST the same JSON body with the same Standard Webhooks
-- headers as a delivery (the body file is given by BENCH_BODY).
local path = os.getenv("BENCH_BODY")
local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "01900000-0000-7000-8000-000000000000"
wrk.headers["webhook-timestamp"] = "1700000000"
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
