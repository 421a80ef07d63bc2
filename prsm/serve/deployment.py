"""The gateway as a Ray Serve ingress deployment: each replica builds its own dependencies
from plain settings, then serves the FastAPI app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.deployment import Application

from prsm.serve import routes_edge
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps

Builder = Callable[[dict[str, Any]], Awaitable[GatewayDeps]]


# PRSM's middleware logs each request once, with its correlation id: Serve's access line
# for the same request would be a second one.
@serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256,
                  logging_config={"enable_access_log": False})  # fmt: skip
@serve.ingress()
class Gateway:
    async def __init__(self, build: Builder, settings: dict[str, Any]) -> None:  # type: ignore[misc]
        self._deps = await build(settings)
        if settings.get("edge") and settings.get("edge_route_port"):
            self._routing = await routes_edge.serve(self._deps, int(settings["edge_route_port"]))

    def __serve_build_asgi_app__(self) -> FastAPI:  # late-bound ingress (`serve.ingress` docs)
        return create_app(self._deps)


def gateway_app(build: Builder, settings: dict[str, Any], replicas: int) -> Application:
    app: Application = Gateway.options(num_replicas=replicas).bind(build, settings)  # type: ignore[attr-defined]
    return app
