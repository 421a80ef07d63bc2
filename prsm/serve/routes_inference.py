"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Each request is routed by the model's route (during a canary rollout, a weighted or per-user
choice between two versions), sent to that version's backend, and metered per model and
version: requests, errors, latency, time to first token, inter-token latency (streamed
responses), tokens in and out. Each request is also recorded, cluster-wide, for the rollout
controller and the version's traffic figures: latency, time to first token, tokens out, and
whether the platform served it (a 4xx is the caller's failure, not the version's)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from prsm.api.errors import error_responses
from prsm.api.models import ChatCompletionBody, CompletionBody, ModelCard, ModelList
from prsm.domain.errors import InjectedFault, ModelUnavailable, NotFound, PrsmError
from prsm.domain.identity import Principal
from prsm.domain.model_registry import Deployment, Route
from prsm.domain.models import SHARED_TENANT, Faults, ModelCall, ModelStatus
from prsm.observability import metrics
from prsm.serve.deps import Deps, GatewayDeps, InferenceCaller, ModelsReader
from prsm.serve.errors import status_of
from prsm.serve.model_catalog import ModelCatalog

ERRORS = error_responses(400, 401, 404, 422, 429, 502, 503, 504)
router = APIRouter(prefix="/v1", tags=["inference (OpenAI-compatible)"], responses=ERRORS)


def _catalog(deps: GatewayDeps) -> ModelCatalog:
    if deps.models is None:
        raise ModelUnavailable("this gateway serves no models")
    return deps.models


@router.get("/models", response_model=ModelList, summary="Models you can call")
async def list_models(principal: ModelsReader, deps: Deps) -> ModelList:
    registry = await _catalog(deps).registry()
    cards: dict[str, ModelCard] = {}
    for d in registry.visible(principal):
        if d.status is not ModelStatus.READY:
            continue
        card = cards.setdefault(d.spec.name, _card(d))
        card.versions.append(d.spec.version)
    return ModelList(data=sorted(cards.values(), key=lambda c: c.id))


@router.get("/models/{model}", response_model=ModelCard, summary="One model")
async def get_model(model: str, principal: ModelsReader, deps: Deps) -> ModelCard:
    found = (await list_models(principal, deps)).data
    for card in found:
        if card.id == model:
            return card
    raise NotFound(f"The model `{model}` does not exist")


def _card(d: Deployment) -> ModelCard:
    owner = "prsm" if d.tenant_id == SHARED_TENANT else d.tenant_id
    return ModelCard(
        id=d.spec.name, created=int(d.created_at.timestamp()), owned_by=owner, versions=[]
    )


@router.post("/chat/completions", summary="Chat completion (OpenAI-compatible)")
async def chat_completions(body: ChatCompletionBody, principal: InferenceCaller, deps: Deps) -> Any:
    return await _infer("chat", body.model_dump(exclude_unset=True), principal, deps)


@router.post("/completions", summary="Text completion (OpenAI-compatible)")
async def completions(body: CompletionBody, principal: InferenceCaller, deps: Deps) -> Any:
    return await _infer("completions", body.model_dump(exclude_unset=True), principal, deps)


async def _infer(
    endpoint: str, body: dict[str, Any], principal: Principal, deps: GatewayDeps
) -> Any:
    deployment, backend, route = await _catalog(deps).resolve(principal, body["model"])
    labels = (deployment.spec.name, deployment.spec.version)
    done = _recorder(deps, route, principal, labels)
    body["model"] = deployment.backend_model
    streaming = bool(body.get("stream"))
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if streaming:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    started = time.perf_counter()
    try:
        if deployment.faults.any:
            await _inject(deployment.faults)
        result = await getattr(backend, endpoint)(body)
    except PrsmError as exc:
        metrics.INFERENCE_REQUESTS.labels(*labels, endpoint, exc.code).inc()
        if done is not None:
            done(time.perf_counter() - started, status_of(exc) < 500, None, 0)
        raise
    if isinstance(result, dict):
        elapsed = time.perf_counter() - started
        metrics.TIME_TO_FIRST_TOKEN.labels(*labels).observe(elapsed)
        metrics.INFERENCE_LATENCY.labels(*labels).observe(elapsed)
        metrics.INFERENCE_REQUESTS.labels(*labels, endpoint, "ok").inc()
        tokens = _count_tokens(labels, result.get("usage"))
        if done is not None:
            done(elapsed, True, elapsed, tokens)
        return JSONResponse(result)
    stream = _metered(result, labels, endpoint, started, wants_usage, done)
    return StreamingResponse(stream, media_type="text/event-stream")


# (seconds, served, seconds to the first token (None: none came), tokens generated)
Done = Callable[[float, bool, float | None, int], None]


def _recorder(
    deps: GatewayDeps, route: Route, principal: Principal, labels: tuple[str, str]
) -> Done | None:
    record = deps.record_call
    if record is None:
        return None

    def done(seconds: float, ok: bool, first_s: float | None, tokens: int) -> None:
        record(ModelCall(
            tenant=route.tenant_id, model=labels[0], version=labels[1],
            caller_tenant=principal.tenant_id, in_rollout=route.rollout_id is not None,
            latency_ms=seconds * 1000, ok=ok, ttft_ms=None if first_s is None else first_s * 1000,
            tokens=tokens, at=time.time(),
        ))  # fmt: skip

    return done


async def _inject(faults: Faults) -> None:
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.error_rate and random.random() < faults.error_rate:
        raise InjectedFault("fault injected into this model version (a drill)")


async def _metered(
    items: AsyncIterator[str],
    labels: tuple[str, str],
    endpoint: str,
    started: float,
    wants_usage: bool,
    done: Done | None,
) -> AsyncIterator[str]:
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
                tokens = _count_tokens(labels, usage)
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


def _count_tokens(labels: tuple[str, str], usage: Any) -> int:
    """Count the response's tokens in the metrics; the tokens it generated."""
    if not isinstance(usage, dict):
        return 0
    generated = usage.get("completion_tokens") or 0
    metrics.INFERENCE_TOKENS.labels(*labels, "in").inc(usage.get("prompt_tokens") or 0)
    metrics.INFERENCE_TOKENS.labels(*labels, "out").inc(generated)
    return int(generated)
