"""The gateway's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from prsm import __version__
from prsm.domain.errors import PrsmError
from prsm.serve import (
    errors,
    routes_deployments,
    routes_inference,
    routes_rollouts,
    routes_system,
    routes_tasks,
)
from prsm.serve.deps import GatewayDeps
from prsm.serve.middleware import RequestContext

log = logging.getLogger("prsm.gateway")


async def _follow_log(deps: GatewayDeps) -> None:
    """Keep the read views current with events other components append."""
    while True:
        try:
            await deps.views.catch_up()
        except PrsmError as exc:
            log.warning("read views could not catch up: %s", exc.message)
        await asyncio.sleep(deps.projection_interval_s)


def create_app(deps: GatewayDeps) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower = asyncio.create_task(_follow_log(deps))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if deps.models is not None:
                await deps.models.close()

    app = FastAPI(
        title="PRSM gateway",
        version=__version__,
        description="Tasks, agents and models of the PRSM platform. Authenticate with "
        "`Authorization: Bearer <token>`; errors are JSON with a stable `code` and the "
        "request's `correlation_id`.",
        lifespan=lifespan,
    )
    app.state.deps = deps
    errors.install(app)
    app.include_router(routes_system.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_deployments.router)
    app.include_router(routes_rollouts.router)
    app.include_router(routes_inference.router)
    app.add_middleware(RequestContext, max_body_bytes=deps.max_body_bytes)
    return app
