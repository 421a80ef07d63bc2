"""OpenAI (or any OpenAI-compatible service) as an ``InferenceBackend``, through the official
async SDK. Bodies pass through: parameters the SDK knows go as keyword arguments, any other
field in ``extra_body`` (so vendor extensions reach the service), and a body can never set
the SDK's own options (``extra_headers``, ``timeout``...). ``body["model"]`` is sent as
given; the backend's ``model`` stands in only when the body names none.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai

from prsm.adapters.inference.providers import DONE, ProviderBackend, SdkErrors, sse
from prsm.service_layer.ports import Completion

PROVIDER = "OpenAI"
SDK_ERRORS = SdkErrors(  # and its HTTP library's, which the SDK may let through
    timeout=(openai.APITimeoutError, httpx2.TimeoutException),
    connection=(openai.APIConnectionError, httpx2.TransportError),
    status=openai.APIStatusError,
    base=(openai.OpenAIError, httpx2.HTTPError),
)
_SDK_OPTIONS = frozenset({"self", "extra_headers", "extra_query", "extra_body", "timeout"})


def _parameters(create: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(create).parameters) - _SDK_OPTIONS


def split_body(body: dict[str, Any], known: frozenset[str], model: str) -> dict[str, Any]:
    """SDK keyword arguments for ``body``: known fields as themselves, the rest in
    ``extra_body``."""
    kwargs = {k: v for k, v in body.items() if k in known}
    kwargs.setdefault("model", model)
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def dump(model: Any) -> dict[str, Any]:
    """An SDK response object as the JSON body the service sent (explicit nulls kept)."""
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return body


class OpenAIBackend(ProviderBackend):
    """One model at OpenAI (or at ``base_url``, any OpenAI-compatible endpoint)."""

    PROVIDER = PROVIDER
    SDK_ERRORS = SDK_ERRORS
    DEFAULT_KEY_ENV = "OPENAI_API_KEY"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 0,
    ) -> None:
        super().__init__(model, api_key=api_key, api_key_env=api_key_env, timeout_s=timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )
        self._chat_params = _parameters(self._client.chat.completions.create)
        self._text_params = _parameters(self._client.completions.create)

    async def chat(self, body: dict[str, Any]) -> Completion:
        kwargs = split_body(body, self._chat_params, self.model)
        with self._translating():
            result = await self._client.chat.completions.create(**kwargs)
        if isinstance(result, openai.AsyncStream):
            return self._relay(result)
        return dump(result)

    async def completions(self, body: dict[str, Any]) -> Completion:
        kwargs = split_body(body, self._text_params, self.model)
        with self._translating():
            result = await self._client.completions.create(**kwargs)
        if isinstance(result, openai.AsyncStream):
            return self._relay(result)
        return dump(result)

    async def _relay(self, stream: openai.AsyncStream[Any]) -> AsyncIterator[str]:
        """The SDK's stream as SSE text; errors after the first chunk raise mid-stream."""
        try:
            with self._translating():
                async for chunk in stream:
                    yield sse(dump(chunk))
        finally:
            await stream.close()
        yield DONE

    async def close(self) -> None:
        await self._client.close()
