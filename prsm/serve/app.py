"""The gateway's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope as AsgiScope

from prsm import __version__
from prsm.domain.errors import PrsmError
from prsm.serve import (
    errors,
    routes_agents,
    routes_audit,
    routes_cluster,
    routes_deployments,
    routes_inference,
    routes_keys,
    routes_packages,
    routes_rollouts,
    routes_skills,
    routes_system,
    routes_tasks,
)
from prsm.serve.deps import GatewayDeps
from prsm.serve.middleware import RequestContext

log = logging.getLogger("prsm.gateway")


async def follow_log(deps: GatewayDeps) -> None:
    """Keep the read views current with events other components append. A failed catch-up
    is logged and tried again on the next tick: a follower that died would leave the views
    stale for the replica's whole life."""
    while True:
        try:
            await deps.views.catch_up()
        except PrsmError as exc:
            log.warning("read views could not catch up: %s", exc.message)
        except Exception:
            log.exception("read views could not catch up")
        await asyncio.sleep(deps.projection_interval_s)


def create_app(deps: GatewayDeps) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower = asyncio.create_task(follow_log(deps))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if deps.models is not None:
                await deps.models.close()
            await deps.audit.close()

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
    app.include_router(routes_keys.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_agents.router)
    app.include_router(routes_cluster.router)
    app.include_router(routes_packages.router)
    app.include_router(routes_skills.router)
    _deny_by_default(app)
    app.mount("/ui", ConsoleFiles(directory=CONSOLE, html=True), name="console")
    app.add_middleware(
        RequestContext,
        max_body_bytes=deps.max_body_bytes,
        max_header_bytes=deps.max_header_bytes,
        large_bodies={routes_packages.router.prefix: deps.max_package_bytes},
    )
    return app


# Routes anyone may call: liveness, readiness, metrics, the API's own documentation.
PUBLIC = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)


CONSOLE = Path(__file__).parent / "console"
# The console's pages run only their own script and call only this gateway; no other site
# may frame them, and no URL of theirs leaves in a Referer.
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class ConsoleFiles(StaticFiles):
    """The web console (``/ui``): static files; every figure on its pages comes from the
    API, called with the token the user signs in with, so it sees what the API lets it."""

    async def get_response(self, path: str, scope: AsgiScope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(CONSOLE_HEADERS)
        return response


def _deny_by_default(app: FastAPI) -> None:
    """Refuse to build a gateway with a route that names no scope (and is not public)."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        scopes = [getattr(d.call, "scope", None) for d in route.dependant.dependencies]
        if not any(scopes):
            raise RuntimeError(f"route {route.path} names no scope: add allow(Scope.…)")
