"""What the gateway needs, built once per replica, and the principal of each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from prsm.domain.errors import AuthenticationError
from prsm.domain.identity import Principal
from prsm.security.tokens import VerifiedTokens
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.ports import EventStore, TaskViews
from prsm.service_layer.rollouts import StatsSource

# (tenant, model, version, latency ms, ok): one request of a model in a rollout
CallRecorder = Callable[[str, str, str, float, bool], None]


@dataclass
class GatewayDeps:
    bus: MessageBus
    store: EventStore
    views: TaskViews
    tokens: VerifiedTokens
    max_body_bytes: int = 1_048_576
    projection_interval_s: float = 0.5
    ready_checks: Mapping[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    models: ModelCatalog | None = None
    on_models_changed: Callable[[], None] | None = None
    record_call: CallRecorder | None = None  # rollout figures, per version
    version_stats: StatsSource | None = None

    def models_changed(self) -> None:
        """Tell the model controller the registry changed (it reconciles at once)."""
        if self.on_models_changed is not None:
            self.on_models_changed()


async def get_deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps = request.app.state.deps
    return deps


_bearer = HTTPBearer(auto_error=False, description="A PRSM token (`prsm token`)")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    deps: Annotated[GatewayDeps, Depends(get_deps)],
) -> Principal:
    """The one place a request's principal is resolved. (Async, as every dependency on the
    hot path: FastAPI runs sync dependencies in a thread pool, a hop per request.)"""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("a bearer token is required")
    principal = deps.tokens.verify(credentials.credentials)
    request.state.principal = principal
    return principal


Deps = Annotated[GatewayDeps, Depends(get_deps)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
