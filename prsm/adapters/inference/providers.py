"""What the provider adapters (OpenAI, Anthropic) share: their base class (model, key,
timeout; made from the environment; SDK errors translated), server-sent-event text, and the
translation of an SDK's exceptions into PRSM errors.

Both official SDKs (``openai``, ``anthropic``) share one exception shape, so each adapter
names its SDK's classes in an :class:`SdkErrors` and wraps its calls in :func:`translating`.

Status mapping: 400/413/422 → ``BadModelRequest``; 401/403 → ``UpstreamAuthFailed``;
404 (the provider does not know the configured model) → ``ModelUnavailable``, an
``UpstreamError``: the model name comes from PRSM's configuration, not from the caller;
408/504 → ``UpstreamTimeout``; 429 → ``RateLimited``; anything else → ``UpstreamError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self

from prsm.domain.errors import (
    BadModelRequest,
    ModelUnavailable,
    PrsmError,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
)

DONE = "data: [DONE]\n\n"


def sse(obj: Mapping[str, Any]) -> str:
    """One server-sent event carrying ``obj`` as JSON."""
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


@dataclass(frozen=True)
class SdkErrors:
    """The exceptions of one SDK, and of its HTTP library where the SDK lets them through
    (the Anthropic SDK does while a stream is read)."""

    timeout: tuple[type[Exception], ...]
    connection: tuple[type[Exception], ...]
    status: type[Exception]
    base: tuple[type[Exception], ...]  # everything to translate


def require_key(provider: str, api_key: str | None, api_key_env: str) -> str:
    """``api_key``, or ``UpstreamAuthFailed`` naming the variable it should come from."""
    if not api_key:
        raise UpstreamAuthFailed(
            f"no {provider} API key: set the environment variable {api_key_env}"
        )
    return api_key


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` (seconds or HTTP date)."""
    try:
        if ms := headers.get("retry-after-ms"):
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _detail(exc: Exception, api_key: str) -> str:
    """The provider's own message (``error.message`` in its body) without the key."""
    body = getattr(exc, "body", None)
    message = str(exc)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            message = inner["message"]
    return message.replace(api_key, "[redacted]") if api_key else message


def status_error(
    provider: str, status: int, headers: Mapping[str, str], detail: str, api_key_env: str
) -> PrsmError:
    """The PRSM error for an HTTP error status from ``provider``."""
    said = f"{provider} answered HTTP {status}: {detail}"
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"{provider} rejected PRSM's API key (HTTP {status}); check the key in the "
            f"environment variable {api_key_env}"
        )
    if status == 429:
        return RateLimited(f"{provider} is rate limiting PRSM: {detail}", retry_after_s(headers))
    if status in (400, 413, 422):
        return BadModelRequest(said)
    if status == 404:
        return ModelUnavailable(said)
    if status in (408, 504):
        return UpstreamTimeout(said)
    return UpstreamError(said)


def to_prsm_error(
    exc: Exception,
    sdk: SdkErrors,
    *,
    provider: str,
    api_key: str,
    api_key_env: str,
    timeout_s: float,
) -> PrsmError:
    if isinstance(exc, sdk.timeout):
        return UpstreamTimeout(f"{provider} did not answer within {timeout_s:g} s")
    if isinstance(exc, sdk.connection):
        return UpstreamError(f"could not reach {provider}: {_detail(exc, api_key)}")
    status: int = getattr(exc, "status_code", 0)
    if isinstance(exc, sdk.status) and status >= 400:
        response = getattr(exc, "response", None)
        headers: Mapping[str, str] = getattr(response, "headers", {})
        return status_error(provider, status, headers, _detail(exc, api_key), api_key_env)
    return UpstreamError(f"{provider} failed: {_detail(exc, api_key)}")


@contextmanager
def translating(
    sdk: SdkErrors, *, provider: str, api_key: str, api_key_env: str, timeout_s: float
) -> Iterator[None]:
    """Raise the PRSM error for any of the SDK's exceptions raised inside the block."""
    try:
        yield
    except sdk.base as exc:
        err = to_prsm_error(
            exc,
            sdk,
            provider=provider,
            api_key=api_key,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
        )
        if isinstance(err, UpstreamAuthFailed):
            # The SDK's exception text quotes the provider's answer, which may echo the key.
            raise err from None
        raise err from exc


class ProviderBackend:
    """The part of an ``InferenceBackend`` that every external provider has: one model, the
    API key (from the variable ``api_key_env``), a timeout, and calls whose SDK errors become
    PRSM errors. Subclasses name their provider, SDK errors and default key variable."""

    PROVIDER: ClassVar[str]
    SDK_ERRORS: ClassVar[SdkErrors]
    DEFAULT_KEY_ENV: ClassVar[str]

    def __init__(self, model: str, *, api_key: str, api_key_env: str, timeout_s: float) -> None:
        require_key(self.PROVIDER, api_key, api_key_env)
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self._api_key = api_key

    @classmethod
    def from_env(cls, model: str, *, api_key_env: str | None = None, **options: Any) -> Self:
        """A backend using the key in the environment variable ``api_key_env`` (default: the
        provider's usual one); ``options`` are the subclass's keyword arguments."""
        env = cls.DEFAULT_KEY_ENV if api_key_env is None else api_key_env
        key = require_key(cls.PROVIDER, os.environ.get(env), env)
        return cls(model, api_key=key, api_key_env=env, **options)

    def _translating(self) -> AbstractContextManager[None]:
        return translating(
            self.SDK_ERRORS,
            provider=self.PROVIDER,
            api_key=self._api_key,
            api_key_env=self.api_key_env,
            timeout_s=self.timeout_s,
        )
