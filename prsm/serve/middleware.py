"""The gateway's outermost layer (pure ASGI): correlation id, header and body size limits,
metrics, and one JSON log line per request.

The correlation id is the one the client chose (``X-Correlation-ID``, or ``X-Request-ID``
as Ray Serve and vLLM name it), or a fresh one; it is sent back as ``X-Correlation-ID``, is
in every log line written while the request is served, goes with the tasks it submits and
with the model calls it makes."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prsm.observability import metrics
from prsm.observability.logging import correlation_id
from prsm.serve.errors import HTTP_CODES, error_response

HEADER = "x-correlation-id"
_HEADER_BYTES = HEADER.encode()
_REQUEST_ID_BYTES = b"x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = logging.getLogger("prsm.gateway")


class RequestContext:
    """``large_bodies``: paths that take larger bodies (uploads), with their limits."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int,
                 large_bodies: dict[str, int] | None = None) -> None:  # fmt: skip
        self.app = app
        self.default_max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.large_bodies = large_bodies or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.large_bodies.get(scope["path"], self.default_max_body_bytes)
        await self._request(scope, receive, send, limit)

    async def _request(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        given, request_id, declared, header_bytes = "", "", "", 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == _HEADER_BYTES:
                given = value.decode("latin-1")
            elif name == _REQUEST_ID_BYTES:
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        valid = [i for i in (given, request_id) if _VALID_ID.match(i)]
        token = correlation_id.set(valid[0] if valid else uuid.uuid4().hex)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (_HEADER_BYTES, correlation_id.get().encode())
                )
            await send(message)

        try:
            if header_bytes > self.max_header_bytes:
                message = f"request headers exceed {self.max_header_bytes} bytes"
                await error_response(431, HTTP_CODES[431], message)(scope, receive, send_with_id)
                return
            if declared.isdigit() and int(declared) > limit:
                await self._reject(scope, receive, send_with_id, limit)
                return
            await self._limited(scope, receive, send_with_id, limit)
        finally:
            route, seconds = _route_of(scope), time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.HTTP_LATENCY.labels(route, scope["method"]).observe(seconds)
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000)
            correlation_id.reset(token)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        message = f"request body exceeds {limit} bytes"
        await error_response(413, HTTP_CODES[413], message)(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, counting body bytes as they arrive; past the limit the app sees a
        disconnect, its output is dropped and the client gets 413."""
        seen, too_large, started = 0, False, False

        async def receive_limited() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_too_large(message: Message) -> None:
            nonlocal started
            if not too_large:
                started = True
                await send(message)

        try:
            await self.app(scope, receive_limited, send_unless_too_large)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._reject(scope, receive, send, limit)


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    return getattr(route, "path", "unmatched")
