-- PRSM's edge: before a chat or completion request goes on, ask the gateway where it may go
-- (POST /route<path> on the gateway replicas' routing port, with the request's Authorization
-- header and body). A 200 names a model replica and a grant; the request then goes to that replica with
-- the grant, and the replica streams the answer to the client. Anything else (204, an
-- error, no answer) leaves the request to the gateway's own route, as without the edge.

local GATEWAY_HOST = "127.0.0.1"
local GATEWAY_PORT = ${route_port}
local TIMEOUT_S = 10
local FORWARDED = { "x-correlation-id", "x-request-id" }

local function ask_gateway(path, authorization, extra, body)
    local sock = core.tcp()
    sock:settimeout(TIMEOUT_S)
    if not sock:connect(GATEWAY_HOST, GATEWAY_PORT) then
        return nil
    end
    local request = "POST /route" .. path .. " HTTP/1.0\r\n"
        .. "Host: " .. GATEWAY_HOST .. "\r\n"
        .. "Connection: close\r\n"
        .. "Content-Type: application/json\r\n"
        .. "Authorization: " .. authorization .. "\r\n"
        .. extra
        .. "Content-Length: " .. #body .. "\r\n\r\n"
        .. body
    if not sock:send(request) then
        sock:close()
        return nil
    end
    local response = sock:receive("*a")
    sock:close()
    return response
end

core.register_action("prsm_route", { "http-req" }, function(txn)
    local body = txn.sf:req_body() or ""
    local length = tonumber(txn.sf:hdr("content-length"))
    if not length or #body < length then
        return -- not read whole (larger than the edge's buffer): the gateway serves it
    end
    local headers = txn.http:req_get_headers()
    local authorization = headers["authorization"] and headers["authorization"][0]
    if not authorization then
        return
    end
    local extra = ""
    for _, name in ipairs(FORWARDED) do
        if headers[name] then
            extra = extra .. name .. ": " .. headers[name][0] .. "\r\n"
        end
    end
    local response = ask_gateway(txn.sf:path(), authorization, extra, body)
    if not response or not response:match("^HTTP/[%d%.]+ 200") then
        return
    end
    local host, port = response:match('"dst"%s*:%s*"([^":]+):(%d+)"')
    local grant = response:match('"grant"%s*:%s*"([^"]+)"')
    if not host or not grant then
        return
    end
    -- The gateway may name a replica that has just died: if it takes no connection, the
    -- gateway's own route serves the request.
    local probe = core.tcp()
    probe:settimeout(1)
    local reachable = probe:connect(host, tonumber(port))
    probe:close()
    if not reachable then
        return
    end
    txn:set_var("txn.prsm_host", host)
    txn:set_var("txn.prsm_port", port)
    txn:set_var("txn.prsm_grant", grant)
end)
