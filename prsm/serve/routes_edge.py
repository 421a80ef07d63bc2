"""The edge's question to the gateway, asked once per chat or completion request before the
edge forwards it: may this request go straight to a model replica, and to which one?

PRSM's edge (HAProxy, see ``prsm.runtime.edge``) sends the request's path, ``Authorization``
header and body to ``POST /route<path>`` on each gateway replica's routing port (one port
on 127.0.0.1 that every gateway replica of the node shares, ``SO_REUSEPORT``; it answers
nothing else, and is not Serve's proxy: the question costs one small request to a gateway
replica). When the caller is authenticated, may call models, is within its rate limit, and
the model it names resolves (by its route: during a rollout, a weighted or sticky choice
between two versions) to a vLLM version with no injected faults whose replica answers HTTP
(an autoscaled version counts these requests too: ``autoscaling``), the answer is that
replica's address and a grant for it (``grants``); the edge forwards the request there and
the replica streams the answer to the client. In every other case (a refusal, an external
provider, a fault drill, a body that is not a valid request) the answer is 204: the edge
forwards the request to the gateway's own route, which serves it and answers any error,
audited, exactly as without the edge."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from prsm.adapters.inference import grants
from prsm.adapters.inference.direct_http import read_body
from prsm.adapters.inference.vllm_serve import VllmServeBackend
from prsm.api.models import ChatCompletionBody, CompletionBody
from prsm.domain import events as ev
from prsm.domain.errors import PrsmError
from prsm.domain.identity import Principal
from prsm.domain.policy import Scope
from prsm.observability import metrics
from prsm.observability.logging import correlated
from prsm.serve.deps import GatewayDeps, authenticate_quietly, within_rate_limit

BODIES: dict[str, type[ChatCompletionBody] | type[CompletionBody]] = {
    "/v1/chat/completions": ChatCompletionBody,
    "/v1/completions": CompletionBody,
}
PREFIX = "/route"
log = logging.getLogger("prsm.gateway")


async def decide(deps: GatewayDeps, path: str, authorization: str | None, raw: bytes,
                 request_id: str) -> dict[str, str] | None:  # fmt: skip
    """``{"dst": host:port, "grant": …}`` for a request the replica may serve; None: the
    gateway's own route serves it."""
    kind = BODIES.get(path)
    if kind is None or deps.grant_key is None or deps.models is None:
        return None
    try:
        body = kind.model_validate_json(raw)
    except ValidationError:
        return None
    principal = await authenticate_quietly(deps, authorization, Scope.INFERENCE)
    if principal is None:
        return None
    try:
        deployment, backend, route = await deps.models.resolve(principal, body.model)
        if not isinstance(backend, VllmServeBackend) or deployment.faults.any:
            return None
        address = await backend.direct_address()
    except PrsmError:
        return None
    if not address or not await within_rate_limit(deps, principal, Scope.INFERENCE):
        return None
    _audit(deps, principal, path, request_id)
    with correlated(request_id):
        log.info("POST %s for %s:%s goes to its replica at %s", path, deployment.spec.name,
                 deployment.spec.version, address)  # fmt: skip
    grant = grants.Grant(
        app=backend.app, model=deployment.spec.name, version=deployment.spec.version,
        tenant=route.tenant_id, caller_tenant=principal.tenant_id,
        in_rollout=route.rollout_id is not None, request_id=request_id,
        expires=time.time() + grants.TTL_S,
    )  # fmt: skip
    return {"dst": address, "grant": grants.mint(deps.grant_key, grant)}


def _audit(deps: GatewayDeps, principal: Principal, path: str, request_id: str) -> None:
    """The same entry the gateway's route records for an allowed call."""
    metrics.ACCESS_DECISIONS.labels("authorization", "allow").inc()
    deps.audit.record(ev.AccessDecided(
        at=datetime.now(UTC), allowed=True, stage="authorization",
        reason=f"scope {Scope.INFERENCE.value} granted", method="POST", route=path,
        scope=Scope.INFERENCE.value, user_id=principal.user_id,
        tenant_id=principal.tenant_id, credential=principal.via,
        correlation_id=request_id, client=None,
    ))  # fmt: skip


class Routing:
    """The routing port's ASGI app: ``POST /route<path>`` only (404 for anything else)."""

    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] != "POST" or not path.startswith(PREFIX):
            await _send(send, 404, b"")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-correlation-id") or headers.get("x-request-id")
        answer = await decide(self.deps, path[len(PREFIX):], headers.get("authorization"),
                              await read_body(receive), request_id or uuid.uuid4().hex)  # fmt: skip
        if answer is None:
            await _send(send, 204, b"")
        else:
            await _send(send, 200, json.dumps(answer).encode())


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve(deps: GatewayDeps, port: int) -> asyncio.Task[None]:
    """Answer the edge on ``127.0.0.1:port``, shared with the node's other gateway replicas."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(Routing(deps), log_level="warning", access_log=False,
                            lifespan="off")  # fmt: skip
    return asyncio.get_running_loop().create_task(uvicorn.Server(config).serve(sockets=[sock]))
