"""A model replica's own HTTP server (``direct_http.DirectApp``) in front of a stand-in
engine: only granted requests, the request as the engine should get it, the answer metered
and recorded as the gateway would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from prsm.adapters.inference import grants
from prsm.adapters.inference.direct_http import DirectApp, serve
from prsm.domain.models import ModelCall

KEY = grants.grant_key(b"secret")
APP = "prsm-model-tiny-v2-0000"
CHUNK = 'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
USAGE = 'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n'


@dataclass
class Refusal:
    message: str
    code: int


@dataclass
class ErrorResponse:
    error: Refusal


class Whole:
    def model_dump(self, **_: Any) -> dict[str, Any]:
        return {"object": "chat.completion", "usage": {"prompt_tokens": 4, "completion_tokens": 3}}


class Engine:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def chat(self, request: Any, raw: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        if request.messages[0]["content"] == "too long":
            yield ErrorResponse(Refusal("maximum context length exceeded", 400))
        elif request.stream:
            for text in (CHUNK, CHUNK, USAGE, "data: [DONE]\n\n"):
                yield text
        else:
            yield Whole()


def grant(app: str = APP) -> str:
    return grants.mint(KEY, grants.Grant(
        app=app, model="tiny", version="v2", tenant="*", caller_tenant="lab", in_rollout=True,
        request_id="req-42", expires=time.time() + 30,
    ))  # fmt: skip


@pytest.fixture
def served() -> tuple[httpx.AsyncClient, Engine, list[ModelCall]]:
    engine, calls = Engine(), []
    app = DirectApp(engine, "tiny", APP, KEY, calls.append)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://replica")
    return client, engine, calls


def body(content: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"model": "whatever-the-caller-named",
            "messages": [{"role": "user", "content": content}], **fields}  # fmt: skip


async def test_a_request_without_a_valid_grant_for_this_version_is_refused(
    served: tuple[httpx.AsyncClient, Engine, list[ModelCall]],
) -> None:
    client, engine, calls = served
    for headers in ({}, {grants.HEADER: "e30.00"}, {grants.HEADER: grant("prsm-model-other")}):
        answer = await client.post("/v1/chat/completions", json=body(), headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["type"] == "authentication_error"
    assert not engine.requests and not calls


async def test_a_granted_stream_reaches_the_engine_and_is_metered_and_recorded(
    served: tuple[httpx.AsyncClient, Engine, list[ModelCall]],
) -> None:
    client, engine, calls = served
    answer = await client.post("/v1/chat/completions", json=body(stream=True),
                               headers={grants.HEADER: grant()})  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["x-correlation-id"] == "req-42"
    assert answer.text == CHUNK + CHUNK + "data: [DONE]\n\n"  # usage only when asked for
    [request] = engine.requests
    assert (request.model, request.request_id) == ("tiny", "req-42")
    assert request.stream_options.include_usage  # always metered
    [call] = calls
    assert (call.model, call.version, call.tenant, call.caller_tenant) == ("tiny", "v2", "*", "lab")
    assert call.ok and call.in_rollout and call.tokens == 2 and call.ttft_ms is not None


async def test_usage_is_streamed_when_asked_for_and_a_whole_answer_is_json(
    served: tuple[httpx.AsyncClient, Engine, list[ModelCall]],
) -> None:
    client, _, calls = served
    headers = {grants.HEADER: grant()}
    streamed = await client.post(
        "/v1/chat/completions", headers=headers,
        json=body(stream=True, stream_options={"include_usage": True}),
    )  # fmt: skip
    assert USAGE in streamed.text
    whole = await client.post("/v1/chat/completions", json=body(), headers=headers)
    assert whole.json()["usage"]["completion_tokens"] == 3
    assert [c.tokens for c in calls] == [2, 3]


async def test_the_engines_refusal_and_a_body_that_is_not_json_are_openai_shaped_400s(
    served: tuple[httpx.AsyncClient, Engine, list[ModelCall]],
) -> None:
    client, _, calls = served
    headers = {grants.HEADER: grant()}
    refused = await client.post("/v1/chat/completions", json=body("too long"), headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "maximum context length exceeded"
    garbled = await client.post("/v1/chat/completions", content=b"{not json", headers=headers)
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "bad_request"
    assert [c.ok for c in calls] == [True, True]  # the caller's fault, not the version's
    unknown = await client.post("/v1/embeddings", json=body(), headers=headers)
    assert unknown.status_code == 404
    assert json.loads(unknown.text)["error"]["code"] == "not_found"


class Slow(Engine):
    """Streams one chunk, then waits for ``gate`` before the end."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.gate = asyncio.Event(), asyncio.Event()

    async def chat(self, request: Any, raw: Any) -> AsyncIterator[Any]:
        yield CHUNK
        self.started.set()
        await self.gate.wait()
        yield "data: [DONE]\n\n"


async def test_a_stopping_replica_waits_for_the_answers_it_is_streaming() -> None:
    engine = Slow()
    started, gate = engine.started, engine.gate
    app = DirectApp(engine, "tiny", APP, KEY, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://r") as c:
        answer = asyncio.create_task(c.post("/v1/chat/completions", json=body(stream=True),
                                            headers={grants.HEADER: grant()}))  # fmt: skip
        await asyncio.wait_for(started.wait(), 5)
        assert app.active == 1 and not await app.drained(0.2)
        gate.set()
        assert await app.drained(5)
        assert (await answer).text == CHUNK + "data: [DONE]\n\n"


async def test_a_stopping_replica_takes_no_new_connection_and_finishes_its_streams() -> None:
    """On its own port (a real server): once stopping, a new connection is refused (the
    edge then takes the gateway's route), while the stream under way goes on to its end."""
    engine = Slow()
    started, gate = engine.started, engine.gate
    listening = await serve(DirectApp(engine, "tiny", APP, KEY, None))
    url = f"http://{listening.address}/v1/chat/completions"
    async with httpx.AsyncClient() as c:
        answer = asyncio.create_task(c.post(url, json=body(stream=True),
                                            headers={grants.HEADER: grant()}))  # fmt: skip
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.create_task(listening.stop(10))
        await asyncio.sleep(0.5)  # the server checks for its stop every 0.1 s
        with pytest.raises(httpx.ConnectError):
            await httpx.AsyncClient().post(url, json=body(), headers={grants.HEADER: grant()})
        assert not stopping.done()
        gate.set()
        assert await stopping
        assert (await answer).text == CHUNK + "data: [DONE]\n\n"
    await asyncio.wait_for(listening.task, 5)
