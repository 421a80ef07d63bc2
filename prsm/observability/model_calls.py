"""How a model call is metered, wherever it is answered (the gateway, or a model replica
that answers HTTP itself): requests, errors, latency, time to first token, inter-token
latency (streamed responses), tokens in and out, per model and version; and the call's
figures for the rollout controller and the version's traffic (``Done``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prsm.domain.errors import PrsmError
from prsm.domain.models import ModelCall
from prsm.observability import metrics

# (seconds, served, seconds to the first token (None: none came), tokens generated)
Done = Callable[[float, bool, float | None, int], None]


def recorder(record: Callable[[ModelCall], None] | None, tenant: str, model: str,
             version: str, caller_tenant: str, in_rollout: bool) -> Done | None:  # fmt: skip
    """The ``Done`` of one call that ``record`` keeps as a ``ModelCall`` (None: not kept)."""
    if record is None:
        return None
    keep = record

    def done(seconds: float, ok: bool, first_s: float | None, tokens: int) -> None:
        keep(ModelCall(
            tenant=tenant, model=model, version=version, caller_tenant=caller_tenant,
            in_rollout=in_rollout, latency_ms=seconds * 1000, ok=ok,
            ttft_ms=None if first_s is None else first_s * 1000, tokens=tokens, at=time.time(),
        ))  # fmt: skip

    return done


def answered(labels: tuple[str, str], endpoint: str, elapsed: float,
             result: dict[str, Any], done: Done | None) -> None:  # fmt: skip
    """Meter a whole (not streamed) answer."""
    metrics.TIME_TO_FIRST_TOKEN.labels(*labels).observe(elapsed)
    metrics.INFERENCE_LATENCY.labels(*labels).observe(elapsed)
    metrics.INFERENCE_REQUESTS.labels(*labels, endpoint, "ok").inc()
    tokens = count_tokens(labels, result.get("usage"))
    if done is not None:
        done(elapsed, True, elapsed, tokens)


def failed(labels: tuple[str, str], endpoint: str, elapsed: float, exc: PrsmError,
           served: bool, done: Done | None) -> None:  # fmt: skip
    """Meter a call that failed before its answer began (``served``: the caller's fault,
    not the version's)."""
    metrics.INFERENCE_REQUESTS.labels(*labels, endpoint, exc.code).inc()
    if done is not None:
        done(elapsed, served, None, 0)


async def metered(
    items: AsyncIterator[str],
    labels: tuple[str, str],
    endpoint: str,
    started: float,
    wants_usage: bool,
    done: Done | None,
) -> AsyncIterator[str]:
    """A streamed answer's server-sent events, metered as they pass; the usage-only chunk is
    dropped unless the client asked for it; an error after the stream began goes to the
    client in-band."""
    first_at = last_at = 0.0  # when the first and the last chunk with tokens came
    usage: dict[str, Any] | None = None
    tokens = 0
    outcome = "stream_error"
    try:
        async for text in items:
            now = time.perf_counter()
            if not first_at:
                metrics.TIME_TO_FIRST_TOKEN.labels(*labels).observe(now - started)
                first_at = now
            if '"choices":[]' in text and '"usage"' in text:
                usage = _usage(text)
                tokens = count_tokens(labels, usage)
                if not wants_usage:
                    continue
            elif "data: [DONE]" not in text:
                last_at = now
            yield text
        outcome = "ok"
        _inter_token(labels, last_at - first_at, usage)
    except PrsmError as exc:  # the stream broke after it began: tell the client in-band
        outcome = exc.code
        error = {"error": {"code": exc.code, "message": exc.message, "type": "api_error"}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        elapsed = time.perf_counter() - started
        metrics.INFERENCE_LATENCY.labels(*labels).observe(elapsed)
        metrics.INFERENCE_REQUESTS.labels(*labels, endpoint, outcome).inc()
        if done is not None:
            done(elapsed, outcome == "ok", first_at - started if first_at else None, tokens)


def _inter_token(labels: tuple[str, str], span_s: float, usage: dict[str, Any] | None) -> None:
    """The response's mean inter-token latency: from its first token to its last, over the
    tokens after the first (responses of fewer than two tokens have none)."""
    tokens = (usage or {}).get("completion_tokens") or 0
    if tokens >= 2 and span_s > 0:
        metrics.INTER_TOKEN_LATENCY.labels(*labels).observe(span_s / (tokens - 1))


def _usage(text: str) -> dict[str, Any] | None:
    for line in text.splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage")
            return usage if isinstance(usage, dict) else None
    return None


def count_tokens(labels: tuple[str, str], usage: Any) -> int:
    """Count the response's tokens in the metrics; the tokens it generated."""
    if not isinstance(usage, dict):
        return 0
    generated = usage.get("completion_tokens") or 0
    metrics.INFERENCE_TOKENS.labels(*labels, "in").inc(usage.get("prompt_tokens") or 0)
    metrics.INFERENCE_TOKENS.labels(*labels, "out").inc(generated)
    return int(generated)
