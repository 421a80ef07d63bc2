"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Each request is routed by the model's route (during a canary rollout, a weighted or per-user
choice between two versions), sent to that version's backend, and metered per model and
version: requests, errors, latency, time to first token, inter-token latency (streamed
responses), tokens in and out. Each request is also recorded, cluster-wide, for the rollout
controller and the version's traffic figures: latency, time to first token, tokens out, and
whether the platform served it (a 4xx is the caller's failure, not the version's)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from prsm.api.errors import error_responses
from prsm.api.models import ChatCompletionBody, CompletionBody, ModelCard, ModelList
from prsm.domain.errors import InjectedFault, ModelUnavailable, NotFound, PrsmError
from prsm.domain.identity import Principal
from prsm.domain.model_registry import Deployment, Route
from prsm.domain.models import SHARED_TENANT, Faults, ModelStatus
from prsm.observability import model_calls
from prsm.observability.model_calls import Done
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
        elapsed = time.perf_counter() - started
        model_calls.failed(labels, endpoint, elapsed, exc, status_of(exc) < 500, done)
        raise
    if isinstance(result, dict):
        model_calls.answered(labels, endpoint, time.perf_counter() - started, result, done)
        return JSONResponse(result)
    stream = model_calls.metered(result, labels, endpoint, started, wants_usage, done)
    return StreamingResponse(stream, media_type="text/event-stream")


def _recorder(
    deps: GatewayDeps, route: Route, principal: Principal, labels: tuple[str, str]
) -> Done | None:
    return model_calls.recorder(deps.record_call, route.tenant_id, *labels,
                                principal.tenant_id, route.rollout_id is not None)  # fmt: skip


async def _inject(faults: Faults) -> None:
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.error_rate and random.random() < faults.error_rate:
        raise InjectedFault("fault injected into this model version (a drill)")
