"""Liveness, readiness, metrics and who-am-I."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prsm.api.errors import error_responses
from prsm.api.system import Status, WhoAmI
from prsm.domain.policy import granted
from prsm.observability.metrics import READY
from prsm.serve.deps import Deps, WhoAmIScope

router = APIRouter(tags=["system"])
CHECK_TIMEOUT_S = 3.0  # a check that takes longer counts as failing


@router.get("/health", response_model=Status, summary="Liveness")
async def health() -> Status:
    return Status(status="ok")


@router.get(
    "/ready",
    response_model=Status,
    responses={503: {"model": Status}},
    summary="Readiness: store, Ray and runtime actors answer (a 503 names what does not)",
)
async def ready(deps: Deps) -> JSONResponse:
    checks = await _checks(deps)
    ok = all(v == "ok" for v in checks.values())
    body = Status(status="ready" if ok else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _checks(deps: Deps) -> dict[str, str]:
    """Each readiness check, all at once, each within ``CHECK_TIMEOUT_S``: ``ok`` or
    ``failing: <why>``; recorded as ``prsm_ready``."""
    named = {"store": deps.store.ping, **deps.ready_checks}
    answers = await asyncio.gather(*(_check(c) for c in named.values()))
    checks = dict(zip(named, answers, strict=True))
    for name, answer in checks.items():
        READY.labels(name).set(1.0 if answer == "ok" else 0.0)
    return checks


async def _check(check: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"failing: no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # whatever a dependency raises, the answer is that it fails
        return f"failing: {exc}"
    return "ok"


@router.get(
    "/metrics",
    summary="Prometheus metrics of this gateway replica (its readiness checks run first)",
)
async def metrics(deps: Deps) -> Response:
    await _checks(deps)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/whoami",
    response_model=WhoAmI,
    responses=error_responses(401),
    summary="The principal of the token",
)
async def whoami(principal: WhoAmIScope) -> WhoAmI:
    return WhoAmI(
        user_id=principal.user_id, tenant_id=principal.tenant_id, roles=sorted(principal.roles),
        scopes=sorted(s.value for s in granted(principal)),
    )  # fmt: skip
