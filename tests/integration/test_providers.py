"""The external-provider backends against local fakes of OpenAI and Anthropic, with the
official SDKs doing the HTTP."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types import Completion as OpenAITextCompletion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from prsm.adapters.inference.anthropic_provider import AnthropicBackend
from prsm.adapters.inference.openai_provider import OpenAIBackend
from prsm.adapters.inference.providers import DONE, retry_after_s, sse
from prsm.domain.errors import (
    BadModelRequest,
    ModelUnavailable,
    PrsmError,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
)
from prsm.service_layer.ports import Completion
from tests.fake_providers import (
    FakeProvider,
    anthropic_fake,
    anthropic_server,
    openai_fake,
    openai_server,
)

__all__ = ["anthropic_fake", "anthropic_server", "openai_fake", "openai_server"]  # fixtures

Backend = OpenAIBackend | AnthropicBackend
Make = Callable[..., Backend]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "what is PRSM"},
]
ANSWER = "You said: what is PRSM"  # the fakes answer "Hello from <provider>. " + this
WRONG_KEY = "sk-wrong-secret-0987654321"


async def collect(completion: Completion, into: list[str] | None = None) -> list[str]:
    assert not isinstance(completion, dict), "expected a stream"
    items = [] if into is None else into
    async for item in completion:
        items.append(item)
    return items


def payloads(items: list[str]) -> list[dict[str, Any]]:
    """The JSON of each streamed event; the stream must end with exactly one [DONE]."""
    assert items[-1] == DONE
    assert DONE not in items[:-1]
    for item in items[:-1]:
        assert item.startswith("data: ") and item.endswith("\n\n"), item
    return [json.loads(item.removeprefix("data: ")) for item in items[:-1]]


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """``make(fake, model, **options)``: a backend at the fake, closed after the test."""
    made: list[Backend] = []

    def _make(fake: FakeProvider, model: str = "test-model", **options: Any) -> Backend:
        cls = OpenAIBackend if fake.name == "OpenAI" else AnthropicBackend
        options.setdefault("api_key", fake.api_key)
        options.setdefault("timeout_s", 5.0)
        backend = cls(model, base_url=fake.base_url, **options)
        made.append(backend)
        return backend

    yield _make
    for backend in made:
        await backend.close()


@pytest.fixture(params=["OpenAI", "Anthropic"])
def fake(
    request: pytest.FixtureRequest, openai_server: FakeProvider, anthropic_server: FakeProvider
) -> FakeProvider:
    """Each provider's fake in turn, reset."""
    server = openai_server if request.param == "OpenAI" else anthropic_server
    server.reset()
    return server


# OpenAI


async def test_openai_chat_returns_the_body_and_sends_the_key(
    openai_fake: FakeProvider, make: Make
) -> None:
    backend = make(openai_fake, api_key=openai_fake.api_key)
    sent = {"model": "gpt-fake", "messages": CHAT, "temperature": 0.2}
    out = await backend.chat(sent)
    assert isinstance(out, dict)
    ChatCompletion.model_validate(out)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": f"Hello from OpenAI. {ANSWER}",
        "refusal": None,
    }
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    assert openai_fake.last.path == "/v1/chat/completions"
    assert openai_fake.last.headers["authorization"] == f"Bearer {openai_fake.api_key}"
    assert openai_fake.last.body == sent


async def test_openai_chat_streams_sse_with_usage(openai_fake: FakeProvider, make: Make) -> None:
    backend = make(openai_fake)
    sent = body("gpt-fake", stream=True, stream_options={"include_usage": True})
    stream = await backend.chat(sent)
    chunks = payloads(await collect(stream))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content(chunks) == "Hello from OpenAI. You said: hi"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7}
    assert openai_fake.last.body["stream"] is True
    assert openai_fake.last.headers["authorization"] == f"Bearer {openai_fake.api_key}"


async def test_openai_completions_plain_and_streamed(openai_fake: FakeProvider, make: Make) -> None:
    backend = make(openai_fake)
    out = await backend.completions({"model": "gpt-fake", "prompt": "say hello", "max_tokens": 4})
    assert isinstance(out, dict)
    OpenAITextCompletion.model_validate(out)
    assert out["object"] == "text_completion"
    assert out["choices"][0]["text"] == "Hello from OpenAI. You "
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 4
    assert openai_fake.last.path == "/v1/completions"

    stream = await backend.completions({"model": "gpt-fake", "prompt": "go", "stream": True})
    chunks = payloads(await collect(stream))
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello from OpenAI. You said: go"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "text_completion" for c in chunks)


async def test_openai_forwards_unknown_fields_but_never_sdk_options(
    openai_fake: FakeProvider, make: Make
) -> None:
    backend = make(openai_fake)
    sneaky = {"authorization": "Bearer stolen", "x-fake-status": "500"}
    await backend.chat(body("gpt-fake", top_k=5, extra_headers=sneaky, timeout=0.000001))
    assert openai_fake.last.headers["authorization"] == f"Bearer {openai_fake.api_key}"
    assert openai_fake.last.body["top_k"] == 5  # a vendor extension reaches the service
    assert openai_fake.last.body["extra_headers"] == sneaky  # as data, not as headers


async def test_openai_uses_its_model_when_the_body_names_none(
    openai_fake: FakeProvider, make: Make
) -> None:
    out = await make(openai_fake, "gpt-configured").chat({"messages": CHAT})
    assert isinstance(out, dict)
    assert openai_fake.last.body["model"] == "gpt-configured"


# Anthropic


async def test_anthropic_chat_translates_request_and_response(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    backend = make(anthropic_fake)
    sent = {"model": "claude-fake", "messages": CHAT, "temperature": 0.3, "stop": "zzz"}
    out = await backend.chat({**sent, "user": "alice"})
    got = anthropic_fake.last
    assert got.path == "/v1/messages"
    assert anthropic_fake.key_of(got.headers) == anthropic_fake.api_key
    assert got.headers.get("anthropic-version")
    assert got.body["system"] == "Be brief."
    assert got.body["messages"] == [{"role": "user", "content": "what is PRSM"}]
    assert got.body["max_tokens"] == 1024
    assert got.body["stop_sequences"] == ["zzz"]
    assert got.body["temperature"] == 0.3
    assert got.body["metadata"] == {"user_id": "alice"}
    assert got.body["model"] == "claude-fake"

    assert isinstance(out, dict)
    ChatCompletion.model_validate(out)
    assert out["object"] == "chat.completion"
    assert out["id"] == "msg_fake01"
    assert out["model"] == "claude-fake"
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": f"Hello from Anthropic. {ANSWER}"}
    assert choice["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}


async def test_anthropic_translates_parts_and_developer_messages(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    parts = [{"type": "text", "text": "what is "}, {"type": "text", "text": "PRSM"}]
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "developer", "content": "Cite sources."},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "A platform."},
        {"role": "user", "content": "more"},
    ]
    out = await make(anthropic_fake, default_max_tokens=50).chat({"messages": messages})
    sent = anthropic_fake.last.body
    assert sent["system"] == "Be brief.\n\nCite sources."
    assert sent["messages"] == [
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "A platform."},
        {"role": "user", "content": "more"},
    ]
    assert sent["max_tokens"] == 50
    assert sent["model"] == "test-model"  # the backend's model: the body named none
    assert isinstance(out, dict)
    assert out["choices"][0]["message"]["content"] == "Hello from Anthropic. You said: more"


@pytest.mark.parametrize(
    ("fields", "text", "finish", "sent_max"),
    [
        ({"max_tokens": 3}, "Hello from Anthropic. ", "length", 3),
        ({"max_completion_tokens": 2, "max_tokens": 9}, "Hello from ", "length", 2),
        ({"stop": ["You", "zzz"]}, "Hello from Anthropic. ", "stop", 1024),
    ],
)
async def test_anthropic_finish_reasons(
    anthropic_fake: FakeProvider,
    make: Make,
    fields: dict[str, Any],
    text: str,
    finish: str,
    sent_max: int,
) -> None:
    out = await make(anthropic_fake).chat(body("claude-fake", **fields))
    assert isinstance(out, dict)
    assert out["choices"][0]["message"]["content"] == text
    assert out["choices"][0]["finish_reason"] == finish
    assert out["usage"]["completion_tokens"] == len(text.split())
    assert anthropic_fake.last.body["max_tokens"] == sent_max


async def test_anthropic_chat_streams_openai_chunks(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    backend = make(anthropic_fake)
    sent = {"model": "claude-fake", "messages": CHAT, "stream": True}
    stream = await backend.chat({**sent, "stream_options": {"include_usage": True}})
    chunks = payloads(await collect(stream))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == "msg_fake01"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content(chunks) == f"Hello from Anthropic. {ANSWER}"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    assert anthropic_fake.last.body["stream"] is True
    assert anthropic_fake.last.body["system"] == "Be brief."

    stream = await backend.chat({**sent, "max_tokens": 2})
    chunks = payloads(await collect(stream))
    assert content(chunks) == "Hello from "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)  # not asked for


async def test_anthropic_completions_plain_and_streamed(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    backend = make(anthropic_fake)
    out = await backend.completions({"model": "claude-fake", "prompt": ["say hi"]})
    assert anthropic_fake.last.body["messages"] == [{"role": "user", "content": "say hi"}]
    assert isinstance(out, dict)
    OpenAITextCompletion.model_validate(out)
    assert out["object"] == "text_completion"
    assert out["choices"][0]["text"] == "Hello from Anthropic. You said: say hi"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}

    stream = await backend.completions(
        {"model": "claude-fake", "prompt": "go", "stream": True, "max_tokens": 4}
    )
    chunks = payloads(await collect(stream))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello from Anthropic. You "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "sent",
    [
        body("c", tools=[{"type": "function", "function": {"name": "f"}}]),
        body("c", n=2),
        {"model": "c", "messages": [{"role": "system", "content": "only a system prompt"}]},
        {"model": "c", "messages": [{"role": "tool", "content": "42", "tool_call_id": "t"}]},
        {
            "model": "c",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        },
    ],
)
async def test_anthropic_refuses_what_it_cannot_translate(
    anthropic_fake: FakeProvider, make: Make, sent: dict[str, Any]
) -> None:
    with pytest.raises(BadModelRequest):
        await make(anthropic_fake).chat(sent)
    assert anthropic_fake.requests == []


async def test_anthropic_completions_take_one_prompt(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    with pytest.raises(BadModelRequest, match="one prompt"):
        await make(anthropic_fake).completions({"model": "c", "prompt": ["a", "b"]})
    assert anthropic_fake.requests == []


async def test_anthropic_stream_that_ends_early_fails(
    anthropic_fake: FakeProvider, make: Make
) -> None:
    anthropic_fake.stream_cut_after = 2
    stream = await make(anthropic_fake).chat(body("c", stream=True))
    got: list[str] = []
    with pytest.raises(UpstreamError, match="message_stop"):
        await collect(stream, got)
    assert content(payloads([*got, DONE])) == "Hello from "


# Errors, for both providers


async def test_rate_limit_carries_retry_after(fake: FakeProvider, make: Make) -> None:
    with pytest.raises(RateLimited) as caught:
        await make(fake, "error-429").chat(body("error-429"))
    assert caught.value.retry_after_s == 7.0
    fake.fail_status, fake.retry_after = 429, "0.25"
    with pytest.raises(RateLimited) as caught:
        await make(fake).chat(body("m"))
    assert caught.value.retry_after_s == 0.25
    assert len(fake.requests) == 2  # no retries by default


async def test_rejected_key_names_the_variable_and_hides_the_key(
    fake: FakeProvider, make: Make
) -> None:
    backend = make(fake, api_key=WRONG_KEY, api_key_env="PRSM_TEST_PROVIDER_KEY")
    with pytest.raises(UpstreamAuthFailed) as caught:
        await backend.chat(body("m"))
    assert fake.key_of(fake.last.headers) == WRONG_KEY  # the fake echoed it in its 401
    err = caught.value
    assert "PRSM_TEST_PROVIDER_KEY" in err.message
    assert "API key" in err.message and fake.name in err.message
    assert WRONG_KEY not in "".join(traceback.format_exception(err))
    assert not err.recoverable


async def test_provider_messages_never_carry_the_key(fake: FakeProvider, make: Make) -> None:
    fake.fail_status, fake.error_message = 400, f"header carried {fake.api_key}, refused"
    with pytest.raises(BadModelRequest) as caught:
        await make(fake).chat(body("m"))
    assert caught.value.message.endswith("header carried [redacted], refused")
    assert fake.api_key not in caught.value.message


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadModelRequest),
        (413, BadModelRequest),
        (422, BadModelRequest),
        (404, ModelUnavailable),
        (403, UpstreamAuthFailed),
        (504, UpstreamTimeout),
    ],
)
async def test_status_errors(
    fake: FakeProvider, make: Make, status: int, error: type[PrsmError]
) -> None:
    with pytest.raises(error) as caught:
        await make(fake).chat(body(f"error-{status}"))
    if error is not UpstreamAuthFailed:  # the provider's own words, for the caller
        assert f"fake {fake.name} answers {status}" in caught.value.message


async def test_server_error_is_an_upstream_error(fake: FakeProvider, make: Make) -> None:
    with pytest.raises(UpstreamError) as caught:
        await make(fake).chat(body("error-500"))
    assert type(caught.value) is UpstreamError
    assert caught.value.recoverable
    assert "500" in caught.value.message


async def test_slow_provider_times_out(fake: FakeProvider, make: Make) -> None:
    fake.delay_s = 3.0
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=r"0\.5 s"):
        await make(fake, timeout_s=0.5).chat(body("m"))
    assert time.monotonic() - started < 2.5


async def test_unreachable_provider_is_an_upstream_error(fake: FakeProvider) -> None:
    cls = OpenAIBackend if fake.name == "OpenAI" else AnthropicBackend
    backend = cls("m", api_key="k", base_url="http://127.0.0.1:9/v1", timeout_s=2)
    try:
        with pytest.raises(UpstreamError, match="could not reach"):
            await backend.chat(body("m"))
    finally:
        await backend.close()


async def test_stream_fails_before_the_first_item(fake: FakeProvider, make: Make) -> None:
    backend = make(fake)
    with pytest.raises(RateLimited):
        await backend.chat(body("error-429", stream=True))  # no iterator comes back
    with pytest.raises(UpstreamAuthFailed):
        await make(fake, api_key=WRONG_KEY).completions(
            {"model": "m", "prompt": "p", "stream": True}
        )


async def test_error_inside_a_stream_is_raised_mid_stream(fake: FakeProvider, make: Make) -> None:
    fake.stream_error_after = 2
    stream = await make(fake).chat(body("m", stream=True))
    got: list[str] = []
    with pytest.raises(UpstreamError):
        await collect(stream, got)
    assert DONE not in got
    assert content(payloads([*got, DONE])) == "Hello from "


async def test_stream_that_stalls_times_out(fake: FakeProvider, make: Make) -> None:
    fake.chunk_delay_s = 2.0
    stream = await make(fake, timeout_s=0.5).chat(body("m", stream=True))
    with pytest.raises(UpstreamTimeout):
        await collect(stream)


@pytest.mark.parametrize("cls", [OpenAIBackend, AnthropicBackend])
async def test_from_env(
    monkeypatch: pytest.MonkeyPatch,
    openai_fake: FakeProvider,
    anthropic_fake: FakeProvider,
    cls: type[Backend],
) -> None:
    fake = openai_fake if cls is OpenAIBackend else anthropic_fake
    monkeypatch.delenv("PRSM_TEST_UNSET_KEY", raising=False)
    with pytest.raises(UpstreamAuthFailed, match="PRSM_TEST_UNSET_KEY"):
        cls.from_env("m", api_key_env="PRSM_TEST_UNSET_KEY")
    default_env = "OPENAI_API_KEY" if cls is OpenAIBackend else "ANTHROPIC_API_KEY"
    monkeypatch.delenv(default_env, raising=False)
    with pytest.raises(UpstreamAuthFailed, match=default_env):
        cls.from_env("m")

    monkeypatch.setenv("PRSM_TEST_SET_KEY", fake.api_key)
    backend = cls.from_env("m", api_key_env="PRSM_TEST_SET_KEY", base_url=fake.base_url)
    try:
        assert isinstance(await backend.chat(body("m")), dict)
    finally:
        await backend.close()
    assert fake.key_of(fake.last.headers) == os.environ["PRSM_TEST_SET_KEY"]


# The SSE helpers


def test_sse_and_retry_after() -> None:
    assert sse({"a": 1, "b": "é"}) == 'data: {"a":1,"b":"\\u00e9"}\n\n'
    assert DONE == "data: [DONE]\n\n"
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s({"retry-after": "Tue, 01 Jan 2030 12:00:30 GMT"}, now) == 30.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
