"""A model replica's own HTTP server: the OpenAI-compatible chat and completion routes of its
one model version, for requests the gateway granted (see ``grants``).

The engine runs in this process; its answer goes to the client from here, each streamed
chunk written as the engine yields it, with no other PRSM process on the way. The replica
meters each call as the gateway would (``prsm.observability.model_calls``) and records it
for the rollout controller and the version's traffic figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from prsm.adapters.inference import engine_io, grants
from prsm.domain.errors import BadModelRequest, NotFound, PrsmError, RateLimited
from prsm.domain.models import ModelCall
from prsm.observability import model_calls
from prsm.observability.logging import correlated
from prsm.observability.model_calls import Done

log = logging.getLogger("prsm.model")

_STATUS = {BadModelRequest: 400, NotFound: 404, RateLimited: 429}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          429: "rate_limit_error"}  # fmt: skip
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


def status_of(exc: PrsmError) -> int:
    return next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 502)


def error_json(status: int, code: str, message: str, request_id: str) -> bytes:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    error = {"code": code, "message": message, "type": kind, "param": None,
             "correlation_id": request_id}  # fmt: skip
    return json.dumps({"error": error}).encode()


class DirectApp:
    """The ASGI app. ``engine``: the replica's vLLM engine (``chat``/``completions`` of a
    parsed request, yielding SSE strings or a whole response); ``record``: where each call's
    figures go (the rollout stats), or None."""

    def __init__(self, engine: Any, model_id: str, app: str, key: bytes,
                 record: Callable[[ModelCall], None] | None) -> None:  # fmt: skip
        self.engine, self.model_id, self.app, self.key = engine, model_id, app, key
        self.record = record
        self.active = 0  # granted requests being answered
        self._idle = asyncio.Event()
        self._idle.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no granted request is being answered (at most ``timeout_s``); whether
        none is. A replica that stops waits so: Serve drains only the requests it routed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return not self.active

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint = ENDPOINTS.get(scope["path"])
        if endpoint is None or scope["method"] != "POST":
            await _send(send, 404, error_json(404, "not_found", "no such route", ""))
            return
        try:
            grant = grants.verify(self.key, headers.get(grants.HEADER), self.app)
        except grants.GrantRefused as exc:
            await _send(send, 401, error_json(401, "unauthenticated", str(exc), ""))
            return
        self.active += 1
        self._idle.clear()
        try:
            body = await read_body(receive)
            with correlated(grant.request_id):
                await self._serve(endpoint, grant, body, send)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def _serve(self, endpoint: str, grant: grants.Grant, raw: bytes, send: Any) -> None:
        labels = (grant.model, grant.version)
        done = self._done(grant)
        started = time.perf_counter()
        try:
            body, wants_usage = _prepared(raw, self.model_id)
            stream = await self._start(endpoint, body, grant.request_id)
        except PrsmError as exc:
            status = status_of(exc)
            model_calls.failed(labels, endpoint, time.perf_counter() - started, exc,
                               status < 500, done)  # fmt: skip
            error = error_json(status, exc.code, exc.message, grant.request_id)
            await _send(send, status, error, grant.request_id)
            return
        if isinstance(stream, dict):
            model_calls.answered(labels, endpoint, time.perf_counter() - started, stream, done)
            await _send(send, 200, json.dumps(stream).encode(), grant.request_id)
            return
        events = model_calls.metered(stream, labels, endpoint, started, wants_usage, done)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
            (b"x-correlation-id", grant.request_id.encode()),
        ]})  # fmt: skip
        async for text in events:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, endpoint: str, body: dict[str, Any],
                     request_id: str) -> dict[str, Any] | AsyncIterator[str]:  # fmt: skip
        """Hand the request to the engine; its whole answer, or its stream of SSE strings
        once the first item has come (an error before it raises)."""
        models = await engine_io.request_models()
        kind = models.ChatCompletionRequest if endpoint == "chat" else models.CompletionRequest
        request = engine_io.parse(kind, body)
        request.request_id = request_id
        log.info("%s request for %s (stream: %s, direct)", endpoint, self.model_id,
                 bool(request.stream))  # fmt: skip
        generator = getattr(self.engine, endpoint)(request, None)
        try:
            first = await anext(generator)
        except StopAsyncIteration:
            raise BadModelRequest("the model returned nothing") from None
        engine_io.raise_if_error(first)
        if hasattr(first, "model_dump"):
            result: dict[str, Any] = first.model_dump(mode="json", exclude_none=True)
            return result
        return _texts(first, generator)

    def _done(self, grant: grants.Grant) -> Done | None:
        return model_calls.recorder(self.record, grant.tenant, grant.model, grant.version,
                                    grant.caller_tenant, grant.in_rollout)  # fmt: skip


def _prepared(raw: bytes, model_id: str) -> tuple[dict[str, Any], bool]:
    """The request body for the engine (its own model name; a stream always asks for usage,
    which is metered) and whether the client asked for usage."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadModelRequest("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadModelRequest("the request body must be a JSON object")
    body["model"] = model_id
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    if body.get("stream"):
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}  # fmt: skip
    return body, wants_usage


async def _texts(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[str]:
    item: Any = first
    while True:
        yield item if isinstance(item, str) else f"data: {item.model_dump_json()}\n\n"
        try:
            item = await anext(rest)
        except StopAsyncIteration:
            return


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, status: int, body: bytes, request_id: str = "") -> None:
    headers = [(b"content-type", b"application/json")]
    if request_id:
        headers.append((b"x-correlation-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Listening:
    """``app`` served at ``address`` (``host:port``)."""

    app: DirectApp
    address: str
    server: Any  # uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self, timeout_s: float) -> bool:
        """Take no new connection (the edge then sends a request for this replica the
        gateway's way), and wait until the answers being streamed are finished (at most
        ``timeout_s``); whether they are."""
        self.server.should_exit = True
        return await self.app.drained(timeout_s)


async def serve(app: DirectApp) -> Listening:
    """Serve ``app`` on a free port of this node's address."""
    import ray
    import uvicorn

    host: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    return Listening(app, f"{host}:{port}", server, task)
