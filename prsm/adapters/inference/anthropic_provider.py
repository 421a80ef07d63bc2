"""Anthropic's Messages API as an ``InferenceBackend``, through the official async SDK.

OpenAI bodies are translated: system (and developer) messages become ``system``; user and
assistant messages with string or text-part content become ``messages``; ``max_tokens`` (or
``max_completion_tokens``, else the backend's default) and ``stop`` (→ ``stop_sequences``)
carry over; ``temperature``, ``top_p`` and ``top_k`` are sent as given. Tool calling, images,
``n`` > 1, ``echo``, ``suffix`` and ``logprobs`` are refused as ``BadModelRequest``. Answers
come back as OpenAI ``chat.completion`` / ``text_completion`` bodies, or chunks when streamed.
``body["model"]`` is sent as given; the backend's ``model`` stands in when the body has none.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.types import (
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    Usage,
)

from prsm.adapters.inference.providers import DONE, ProviderBackend, SdkErrors, sse
from prsm.domain.errors import BadModelRequest, UpstreamError
from prsm.service_layer.ports import Completion

Kind = Literal["chat", "text"]
PROVIDER = "Anthropic"
SDK_ERRORS = SdkErrors(  # and its HTTP library's, which the SDK may let through
    timeout=(anthropic.APITimeoutError, httpx2.TimeoutException),
    connection=(anthropic.APIConnectionError, httpx2.TransportError),
    status=anthropic.APIStatusError,
    base=(anthropic.AnthropicError, httpx2.HTTPError),
)
_OBJECT = {"chat": "chat.completion", "text": "text_completion"}
_CHUNK_OBJECT = {"chat": "chat.completion.chunk", "text": "text_completion"}
_FINISH = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_REFUSED = ("tools", "functions", "echo", "suffix", "logprobs")
_PASSED = ("temperature", "top_p", "top_k")


def _texts(content: Any, where: str) -> list[str]:
    """The text of an OpenAI message content: a string, or a list of text parts."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return [str(t) for t in texts]
    raise BadModelRequest(f"{where}: the Anthropic backend accepts text content only")


def messages_params(body: dict[str, Any], model: str, default_max_tokens: int) -> dict[str, Any]:
    """Anthropic ``messages.create`` arguments for an OpenAI chat body."""
    for name in _REFUSED:
        if body.get(name):
            raise BadModelRequest(f"{name!r} is not supported by the Anthropic backend")
    if (body.get("n") or 1) != 1 or (body.get("best_of") or 1) != 1:
        raise BadModelRequest("the Anthropic backend returns one choice: n must be 1")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.append("".join(_texts(content, f"messages[{i}]")))
        elif role in ("user", "assistant"):
            if not isinstance(content, str):
                texts = _texts(content, f"messages[{i}]")
                content = [{"type": "text", "text": t} for t in texts]
            messages.append({"role": role, "content": content})
        else:
            raise BadModelRequest(f"messages[{i}]: role {role!r} is not supported by Anthropic")
    if not messages:
        raise BadModelRequest("messages must hold at least one user or assistant message")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    params: dict[str, Any] = {
        "model": body.get("model") or model,
        "messages": messages,
        "max_tokens": max_tokens,
    }
    if system:
        params["system"] = "\n\n".join(system)
    if stop := body.get("stop"):
        params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if user := body.get("user"):
        params["metadata"] = {"user_id": str(user)}
    if extra := {k: body[k] for k in _PASSED if body.get(k) is not None}:
        params["extra_body"] = extra
    return params


def prompt_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A legacy completions body as a chat body: the prompt is one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadModelRequest("the Anthropic backend accepts one prompt, as a string")
    chat = {k: v for k, v in body.items() if k != "prompt"}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def _input_tokens(usage: Usage | MessageDeltaUsage) -> int:
    cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    return (usage.input_tokens or 0) + cached


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "", "stop")


def _choice(kind: Kind, text: str | None, finish: str | None, *, role: bool = False) -> Any:
    if kind == "text":
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    delta: dict[str, str] = {"role": "assistant"} if role else {}
    if text is not None:
        delta["content"] = text
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def openai_body(message: anthropic.types.Message, kind: Kind) -> dict[str, Any]:
    """An Anthropic message as an OpenAI ``chat.completion`` or ``text_completion`` body."""
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
    finish = finish_reason(message.stop_reason)
    if kind == "chat":
        reply = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}
    else:
        choice = _choice(kind, text, finish)
    usage = _usage(_input_tokens(message.usage), message.usage.output_tokens)
    return {
        "id": message.id,
        "object": _OBJECT[kind],
        "created": int(time.time()),
        "model": message.model,
        "choices": [choice],
        "usage": usage,
    }


class AnthropicBackend(ProviderBackend):
    """One Claude model at Anthropic (or at ``base_url``)."""

    PROVIDER = PROVIDER
    SDK_ERRORS = SDK_ERRORS
    DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        api_key_env: str = "ANTHROPIC_API_KEY",
        max_retries: int = 0,
        default_max_tokens: int = 1024,
    ) -> None:
        super().__init__(model, api_key=api_key, api_key_env=api_key_env, timeout_s=timeout_s)
        self.default_max_tokens = default_max_tokens
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def chat(self, body: dict[str, Any]) -> Completion:
        return await self._create(body, "chat")

    async def completions(self, body: dict[str, Any]) -> Completion:
        return await self._create(prompt_as_chat(body), "text")

    async def _create(self, body: dict[str, Any], kind: Kind) -> Completion:
        params = messages_params(body, self.model, self.default_max_tokens)
        stream = bool(body.get("stream"))
        with self._translating():
            result = await self._client.messages.create(**params, stream=stream)
        if isinstance(result, anthropic.AsyncStream):
            options = body.get("stream_options") or {}
            return self._chunks(result, kind, bool(options.get("include_usage")))
        return openai_body(result, kind)

    async def _chunks(
        self, stream: anthropic.AsyncStream[Any], kind: Kind, include_usage: bool
    ) -> AsyncIterator[str]:
        """Anthropic's events as OpenAI chunks: a role chunk (chat), text deltas, a chunk with
        the finish reason, a usage chunk if asked for, then ``[DONE]``."""
        head: dict[str, Any] = {
            "id": "",
            "object": _CHUNK_OBJECT[kind],
            "created": int(time.time()),
            "model": self.model,
        }
        prompt = completion = 0
        stop_reason: str | None = None
        stopped = False
        try:
            with self._translating():
                async for event in stream:
                    if isinstance(event, RawMessageStartEvent):
                        head.update(id=event.message.id, model=event.message.model)
                        prompt = _input_tokens(event.message.usage)
                        completion = event.message.usage.output_tokens
                        if kind == "chat":
                            yield sse({**head, "choices": [_choice(kind, "", None, role=True)]})
                    elif isinstance(event, RawContentBlockDeltaEvent):
                        if isinstance(event.delta, TextDelta):
                            yield sse({**head, "choices": [_choice(kind, event.delta.text, None)]})
                    elif isinstance(event, RawMessageDeltaEvent):
                        stop_reason = event.delta.stop_reason
                        completion = event.usage.output_tokens
                        if event.usage.input_tokens is not None:
                            prompt = _input_tokens(event.usage)
                    elif isinstance(event, RawMessageStopEvent):
                        stopped = True
        finally:
            await stream.close()
        if not stopped:
            raise UpstreamError(f"{PROVIDER}'s stream ended before message_stop")
        yield sse({**head, "choices": [_choice(kind, None, finish_reason(stop_reason))]})
        if include_usage:
            yield sse({**head, "choices": [], "usage": _usage(prompt, completion)})
        yield DONE

    async def close(self) -> None:
        await self._client.close()
