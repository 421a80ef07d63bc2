"""Local stand-ins for OpenAI and Anthropic: FastAPI apps served by uvicorn in a background
thread on a free 127.0.0.1 port, speaking enough of each protocol for the official SDKs.

    with fake_openai() as fake:            # or the fixtures openai_fake / anthropic_fake
        backend = OpenAIBackend("gpt-x", api_key=fake.api_key, base_url=fake.base_url)
        fake.fail_status = 429             # every request now gets 429 + retry-after
        fake.last.headers["authorization"] # what the last request carried

OpenAI: ``POST /v1/chat/completions`` and ``/v1/completions`` (``base_url`` ends in /v1).
Anthropic: ``POST /v1/messages`` (``base_url`` is the bare origin, as the SDK expects).

The reply is ``fake.reply``, or else ``"Hello from <name>. You said: <last user text>"``;
it streams one whitespace-delimited word per delta, and "tokens" are words
(:func:`count_tokens`). ``max_tokens`` truncates it (finish ``length`` / ``max_tokens``),
a stop sequence cuts it (``stop`` / ``stop_sequence``).

Making a request fail, per test (first match wins):

* header ``x-fake-status: 429`` / ``x-fake-delay: 2.5`` on the request;
* model name ``error-<status>`` (e.g. ``error-500``) or ``slow`` (sleeps ``slow_s``);
* attributes ``fail_status`` (any status; 429 sends ``retry-after: <retry_after>``; the
  error's message is ``error_message`` if set),
  ``delay_s`` (sleep before answering), ``chunk_delay_s`` (sleep before each streamed
  delta), ``stream_error_after`` (an in-stream error event after N deltas),
  ``stream_cut_after`` (the stream just ends after N deltas);
* a key other than ``fake.api_key`` gets 401 (whose message echoes the key, as a careless
  provider might).

``fake.reset()`` restores the defaults and forgets recorded requests; the fixtures do it.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]


def count_tokens(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeProvider:
    """One fake provider's state and server; build with :func:`fake_openai` or
    :func:`fake_anthropic`."""

    def __init__(self, name: str, routes: Callable[[FakeProvider, FastAPI], None]) -> None:
        self.name = name
        self.api_key = f"sk-test-{name.lower()}-0123456789"
        self.slow_s = 5.0
        self.app = FastAPI()
        routes(self, self.app)
        self.reset()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def reset(self) -> None:
        self.requests: list[Recorded] = []
        self.reply: str | None = None
        self.fail_status: int | None = None
        self.error_message: str | None = None
        self.retry_after: str | None = "7"
        self.delay_s = 0.0
        self.chunk_delay_s = 0.0
        self.stream_error_after: int | None = None
        self.stream_cut_after: int | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the provider's SDK as ``base_url``."""
        return f"{self.origin}/v1" if self.name == "OpenAI" else self.origin

    @property
    def last(self) -> Recorded:
        assert self.requests, f"the fake {self.name} received no request"
        return self.requests[-1]

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, f"the fake {self.name} did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # shared request handling

    async def receive(self, request: Request) -> tuple[Recorded, Response | None]:
        """Record the request; return it, and the failure to answer with, if any."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = Recorded(request.url.path, headers, body if isinstance(body, dict) else {})
        self.requests.append(recorded)
        body = recorded.body
        model = str(body.get("model", ""))
        delay = float(headers.get("x-fake-delay") or (self.slow_s if model == "slow" else 0))
        await _sleep_unless_gone(request, delay or self.delay_s)
        if (key := self.key_of(headers)) != self.api_key:
            return recorded, self.error(401, f"Incorrect API key provided: {key}")
        status = headers.get("x-fake-status") or (model[6:] if model.startswith("error-") else "")
        status_code = int(status) if status else self.fail_status
        if status_code:
            message = self.error_message or f"fake {self.name} answers {status_code}"
            return recorded, self.error(status_code, message)
        return recorded, None

    def key_of(self, headers: dict[str, str]) -> str:
        """The API key a request carried: ``Authorization: Bearer`` (OpenAI; Anthropic's SDK
        since 2.x) or ``x-api-key`` (Anthropic's older SDKs)."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self.name == "OpenAI":
            return bearer
        return headers.get("x-api-key") or bearer

    def error(self, status: int, message: str) -> JSONResponse:
        headers = {"retry-after": self.retry_after} if status == 429 and self.retry_after else {}
        if self.name == "OpenAI":
            kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "error")
            body: dict[str, Any] = {
                "error": {"message": message, "type": kind, "param": None, "code": None}
            }
        else:
            kind = _ANTHROPIC_ERRORS.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
            headers["request-id"] = "req_fake"
        return JSONResponse(body, status_code=status, headers=headers)

    def answer(self, said: str, max_tokens: Any, stops: list[str]) -> tuple[list[str], str | None]:
        """The reply's word pieces, and why it ended: ``None`` (naturally), ``"length"``, or
        the stop sequence that cut it."""
        reply = (
            self.reply if self.reply is not None else f"Hello from {self.name}. You said: {said}"
        )
        why: str | None = None
        cuts = sorted((reply.index(s), s) for s in stops if s and s in reply)
        if cuts:
            reply, why = reply[: cuts[0][0]], cuts[0][1]
        pieces: list[str] = re.findall(r"\s*\S+\s*", reply)
        if isinstance(max_tokens, int) and len(pieces) > max_tokens:
            pieces, why = pieces[:max_tokens], "length"
        return pieces, why

    async def stream(self, events: list[str], head: int, tail: list[str]) -> AsyncIterator[str]:
        """``events[:head]`` at once, the rest one per delta, failing as configured."""
        yield "".join(events[:head])
        for n, event in enumerate(events[head:]):
            if n == self.stream_cut_after:
                return
            if n == self.stream_error_after:
                yield self.stream_error()
                return
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield event
        yield "".join(tail)

    def stream_error(self) -> str:
        if self.name == "OpenAI":
            return _data({"error": {"message": "fake stream broke", "type": "server_error"}})
        return _event("error", error={"type": "overloaded_error", "message": "Overloaded"})


_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


async def _sleep_unless_gone(request: Request, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, left))


def _data(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _event(name: str, **fields: Any) -> str:
    """An Anthropic event: ``event: <name>`` with data ``{"type": <name>, **fields}``."""
    return f"event: {name}\ndata: {json.dumps({'type': name, **fields})}\n\n"


def _sse_response(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream")


# OpenAI


def _openai_routes(fake: FakeProvider, app: FastAPI) -> None:
    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _openai(fake, request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _openai(fake, request, chat=False)


async def _openai(fake: FakeProvider, request: Request, *, chat: bool) -> Response:
    recorded, failure = await fake.receive(request)
    if failure:
        return failure
    body = recorded.body
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return fake.error(400, "'messages' must be a non-empty array")
        prompt = " ".join(_text(m.get("content")) for m in messages)
        last_user = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        said = last_user[-1] if last_user else ""
    else:
        raw = body.get("prompt")
        prompt = said = raw if isinstance(raw, str) else ""
        if not prompt:
            return fake.error(400, "'prompt' must be a non-empty string")
    stop = body.get("stop") or []
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    pieces, why = fake.answer(said, max_tokens, [stop] if isinstance(stop, str) else stop)
    finish = "length" if why == "length" else "stop"
    usage = {
        "prompt_tokens": count_tokens(prompt),
        "completion_tokens": len(pieces),
        "total_tokens": count_tokens(prompt) + len(pieces),
    }
    head = {
        "id": "chatcmpl-fake" if chat else "cmpl-fake",
        "object": "chat.completion" if chat else "text_completion",
        "created": 1_700_000_000,
        "model": body.get("model"),
    }
    text = "".join(pieces)
    if not body.get("stream"):
        if chat:
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return JSONResponse({**head, "choices": [choice], "usage": usage})
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    extra = {"usage": None} if with_usage else {}
    head["object"] = "chat.completion.chunk" if chat else "text_completion"

    def chunk(piece: str | None, finish: str | None, *, first: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if piece is not None:
                delta["content"] = piece
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        return _data({**head, "choices": [choice], **extra})

    events = [chunk("", None, first=True)] if chat else []
    events += [chunk(p, None) for p in pieces]
    tail = [chunk(None, finish)]
    if with_usage:
        tail.append(_data({**head, "choices": [], "usage": usage}))
    tail.append("data: [DONE]\n\n")
    return _sse_response(fake.stream(events, 1 if chat else 0, tail))


# Anthropic


def _anthropic_routes(fake: FakeProvider, app: FastAPI) -> None:
    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await _anthropic(fake, request)


def _anthropic_invalid(body: dict[str, Any], headers: dict[str, str]) -> str | None:
    if not headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            return f'messages.{i}.role: Input should be "user" or "assistant"'
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: range: 0..1"
    return None


async def _anthropic(fake: FakeProvider, request: Request) -> Response:
    recorded, failure = await fake.receive(request)
    if failure:
        return failure
    body = recorded.body
    if problem := _anthropic_invalid(body, recorded.headers):
        return fake.error(400, problem)
    messages = body["messages"]
    system = _text(body.get("system"))
    prompt_tokens = count_tokens(system) + sum(count_tokens(_text(m["content"])) for m in messages)
    said = _text(messages[-1]["content"]) if messages[-1]["role"] == "user" else ""
    stops = body.get("stop_sequences") or []
    pieces, why = fake.answer(said, body["max_tokens"], stops)
    reason = {None: "end_turn", "length": "max_tokens"}.get(why, "stop_sequence")
    stop_seq = why if reason == "stop_sequence" else None
    message = {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [{"type": "text", "text": "".join(pieces)}],
        "stop_reason": reason,
        "stop_sequence": stop_seq,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": len(pieces)},
    }
    if not body.get("stream"):
        return JSONResponse(message)
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
    }
    block = {"type": "text", "text": ""}
    events = [
        _event("message_start", message=start),
        _event("content_block_start", index=0, content_block=block),
        _event("ping"),
    ]
    for p in pieces:
        delta = {"type": "text_delta", "text": p}
        events.append(_event("content_block_delta", index=0, delta=delta))
    end = {"stop_reason": reason, "stop_sequence": stop_seq}
    tail = [
        _event("content_block_stop", index=0),
        _event("message_delta", delta=end, usage={"output_tokens": len(pieces)}),
        _event("message_stop"),
    ]
    return _sse_response(fake.stream(events, 3, tail))


def fake_openai() -> FakeProvider:
    return FakeProvider("OpenAI", _openai_routes)


def fake_anthropic() -> FakeProvider:
    return FakeProvider("Anthropic", _anthropic_routes)


# Fixtures: import them into a test module, or name this module in ``pytest_plugins``.


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeProvider]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[FakeProvider]:
    with fake_anthropic() as fake:
        yield fake


@pytest.fixture
def openai_fake(openai_server: FakeProvider) -> FakeProvider:
    """The session's fake OpenAI, reset for this test."""
    openai_server.reset()
    return openai_server


@pytest.fixture
def anthropic_fake(anthropic_server: FakeProvider) -> FakeProvider:
    """The session's fake Anthropic, reset for this test."""
    anthropic_server.reset()
    return anthropic_server
