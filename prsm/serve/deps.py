"""What the gateway needs, built once per replica, and who each request acts for: every route
but the public ones asks ``allow(scope)``, which authenticates the request, lets the policy
decide, records the decision in the audit log and applies the rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from prsm.adapters.blobs import BlobStore
from prsm.domain import api_keys
from prsm.domain import events as ev
from prsm.domain.errors import AuthenticationError, PermissionDenied, PrsmError
from prsm.domain.identity import Principal
from prsm.domain.models import ModelCall, ModelTraffic
from prsm.domain.policy import Scope, decide
from prsm.observability import metrics
from prsm.observability.logging import correlation_id
from prsm.security.tokens import VerifiedTokens
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.api_keys import authenticate as authenticate_key
from prsm.service_layer.audit import AuditLog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.ports import EventStore, TaskViews
from prsm.service_layer.rollouts import StatsSource
from prsm.service_layer.runtime_views import AgentView, ClusterView, QueuePosition

CallRecorder = Callable[[ModelCall], None]
# (tenant, model, version, window s, caller's tenant or None for all): a version's recent
# traffic, cluster-wide
TrafficSource = Callable[[str, str, str, float, str | None], Awaitable[ModelTraffic]]


class Agents(Protocol):
    """The orchestrator's agent registry, as the gateway sees it."""

    async def list(self) -> list[AgentView]: ...

    async def drain(self, agent_id: str) -> bool: ...


class Queue(Protocol):
    """The scheduler, as the gateway sees it."""

    async def stand(self, tasks: list[tuple[str, int, str]]) -> list[QueuePosition]:
        """Where each queued task ``(id, priority, type)`` stands (one the scheduler has not
        seen yet: where it would stand now)."""
        ...

    async def cluster(self) -> ClusterView: ...


# Raises RateLimited when the principal has no token left for this class of route.
RateLimit = Callable[[Principal, str], Awaitable[None]]


@dataclass
class GatewayDeps:
    bus: MessageBus
    store: EventStore
    views: TaskViews
    tokens: VerifiedTokens
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = 16_384
    max_package_bytes: int = 100 * 2**20
    blobs: BlobStore | None = None  # the result store (large results, uploaded packages)
    origin: tuple[str, str] = ("", "")  # (region, zone) of this replica's node
    projection_interval_s: float = 0.5
    ready_checks: Mapping[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    models: ModelCatalog | None = None
    on_models_changed: Callable[[], None] | None = None
    record_call: CallRecorder | None = None  # rollout and traffic figures, per version
    version_stats: StatsSource | None = None
    traffic: TrafficSource | None = None
    rate_limit: RateLimit | None = None
    agents: Agents | None = None  # the orchestrator's agents (None: not on Ray)
    queue: Queue | None = None  # the scheduler's queue and cluster view (None: not on Ray)
    dashboard_port: int | None = None  # the Ray dashboard's, linked from the console
    grant_key: bytes | None = None  # signs the grants of requests the edge sends to replicas
    grafana_url: str | None = None
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.audit = AuditLog(self.store)

    async def authenticate(self, credential: str) -> Principal:
        """A JWT (checked against the cache of verified tokens) or a PRSM API key (checked
        against the store on every request: a revocation holds at once everywhere)."""
        if credential.startswith(api_keys.PREFIX):
            return await authenticate_key(self.store, credential, datetime.now(UTC))
        return self.tokens.verify(credential)

    def models_changed(self) -> None:
        """Tell the model controller the registry changed (it reconciles at once)."""
        if self.on_models_changed is not None:
            self.on_models_changed()


async def get_deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps = request.app.state.deps
    return deps


_bearer = HTTPBearer(auto_error=False, description="A PRSM token (`prsm token`) or API key")

# The class of each scope's routes, for rate limits.
ROUTE_CLASS = {Scope.INFERENCE: "inference", Scope.TASKS_WRITE: "tasks",
               Scope.SKILLS_WRITE: "tasks"}  # fmt: skip


def route_class(scope: Scope) -> str:
    return ROUTE_CLASS.get(scope, "reads")


def allow(scope: Scope) -> Any:
    """The dependency of a route that needs ``scope``. (Async, as every dependency on the
    hot path: FastAPI runs sync dependencies in a thread pool, a hop per request.)"""

    async def authorized(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        deps: Annotated[GatewayDeps, Depends(get_deps)],
    ) -> Principal:
        principal: Principal | None = None
        stage = "authentication"
        try:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise AuthenticationError("a bearer token is required")
            principal = await deps.authenticate(credentials.credentials)
            stage = "authorization"
            decision = decide(principal, scope)
            if not decision.allowed:
                raise PermissionDenied(decision.reason)
            stage = "rate_limit"
            if deps.rate_limit is not None:
                await deps.rate_limit(principal, route_class(scope))
        except PrsmError as exc:
            _audit(deps, request, scope, principal, stage, False, exc.message)
            raise
        _audit(deps, request, scope, principal, stage, True, f"scope {scope.value} granted")
        request.state.principal = principal
        return principal

    authorized.scope = scope  # type: ignore[attr-defined]  # what create_app checks
    return Depends(authorized)


async def authenticate_quietly(deps: GatewayDeps, authorization: str | None,
                               scope: Scope) -> Principal | None:  # fmt: skip
    """Who calls, if the ``Authorization`` header holds a valid credential that grants
    ``scope``; None otherwise. Nothing is recorded for a refusal: the request then goes the
    way that audits it and answers its error."""
    kind, _, credential = (authorization or "").partition(" ")
    if kind.lower() != "bearer" or not credential.strip():
        return None
    try:
        principal = await deps.authenticate(credential.strip())
    except PrsmError:
        return None
    return principal if decide(principal, scope).allowed else None


async def within_rate_limit(deps: GatewayDeps, principal: Principal, scope: Scope) -> bool:
    """Take one of the principal's tokens for ``scope``'s routes; False if none is left (or
    the limiter does not answer), and nothing taken."""
    if deps.rate_limit is None:
        return True
    try:
        await deps.rate_limit(principal, route_class(scope))
    except PrsmError:
        return False
    return True


def _audit(
    deps: GatewayDeps,
    request: Request,
    scope: Scope,
    principal: Principal | None,
    stage: str,
    allowed: bool,
    reason: str,
) -> None:
    route = request.scope.get("route")
    stage = stage if not allowed else "authorization"  # an allowed request passed them all
    metrics.ACCESS_DECISIONS.labels(stage, "allow" if allowed else "deny").inc()
    deps.audit.record(
        ev.AccessDecided(
            at=datetime.now(UTC),
            allowed=allowed,
            stage=stage,
            reason=reason,
            method=request.method,
            route=getattr(route, "path", request.url.path),
            scope=scope.value,
            user_id=principal.user_id if principal else None,
            tenant_id=principal.tenant_id if principal else None,
            credential=principal.via if principal else None,
            correlation_id=correlation_id.get(),
            client=request.client.host if request.client else None,
        )
    )


Deps = Annotated[GatewayDeps, Depends(get_deps)]
WhoAmIScope = Annotated[Principal, allow(Scope.WHOAMI)]
TasksReader = Annotated[Principal, allow(Scope.TASKS_READ)]
TasksWriter = Annotated[Principal, allow(Scope.TASKS_WRITE)]
ModelsReader = Annotated[Principal, allow(Scope.MODELS_READ)]
ModelsWriter = Annotated[Principal, allow(Scope.MODELS_WRITE)]
InferenceCaller = Annotated[Principal, allow(Scope.INFERENCE)]
RolloutsReader = Annotated[Principal, allow(Scope.ROLLOUTS_READ)]
RolloutsWriter = Annotated[Principal, allow(Scope.ROLLOUTS_WRITE)]
KeyOwner = Annotated[Principal, allow(Scope.KEYS)]
Auditor = Annotated[Principal, allow(Scope.AUDIT_READ)]
AgentsReader = Annotated[Principal, allow(Scope.AGENTS_READ)]
AgentsWriter = Annotated[Principal, allow(Scope.AGENTS_WRITE)]
ClusterReader = Annotated[Principal, allow(Scope.CLUSTER_READ)]
SkillsReader = Annotated[Principal, allow(Scope.SKILLS_READ)]
SkillsWriter = Annotated[Principal, allow(Scope.SKILLS_WRITE)]
