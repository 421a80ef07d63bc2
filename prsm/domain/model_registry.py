"""The model registry: every model version deployed on the platform, its status and health,
and the canary rollouts between its versions, kept as one event stream (so a rollout's
decision and the deploy or undeploy it implies are appended together); and the route each
model's requests take."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prsm.domain import events as ev
from prsm.domain import registry_events as rev
from prsm.domain.errors import Conflict, NotFound, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.models import SHARED_TENANT, Faults, ModelSpec, ModelStatus, validated
from prsm.domain.rollout_policy import RolloutPolicy, VersionStats
from prsm.domain.rollouts import Rollout

LIVE = (ModelStatus.DEPLOYING, ModelStatus.READY, ModelStatus.UNDEPLOYING)


@dataclass(frozen=True)
class Deployment:
    spec: ModelSpec
    tenant_id: str
    requested_by: str
    status: ModelStatus
    healthy: bool
    detail: str
    created_at: datetime
    updated_at: datetime
    faults: Faults = field(default_factory=Faults)

    @property
    def key(self) -> str:
        return deployment_key(self.tenant_id, self.spec.name, self.spec.version)

    @property
    def backend_model(self) -> str:
        """The model name its backend knows: the deployment's own for vLLM, the provider's
        model for OpenAI and Anthropic."""
        return self.spec.source if self.spec.is_provider else self.spec.name

    @property
    def model_id(self) -> str:
        return f"{self.spec.name}:{self.spec.version}"


def deployment_key(tenant_id: str, name: str, version: str) -> str:
    return f"{tenant_id}/{name}:{version}"


def usable_tenants(principal: Principal) -> tuple[str, str]:
    """Whose models a principal sees and calls: its tenant's and the shared (platform) ones —
    the one rule behind ``/v1/models``, ``/v1/deployments``, routing and rollouts."""
    return (principal.tenant_id, SHARED_TENANT)


def check_manages(principal: Principal, tenant_id: str, action: str) -> None:
    """Shared models are every tenant's to call and only admins' to manage."""
    if tenant_id == SHARED_TENANT and not principal.is_admin:
        raise PermissionDenied(f"only admins {action} shared models")


@dataclass(frozen=True)
class Route:
    """Where a model's requests go: ``(version, weight)`` pairs, weights summing to 1. With no
    rollout in progress the newest ready version takes all traffic; during a rollout the
    rollout's weights split it (``rollout_id`` set, and ``sticky`` if each user keeps one
    version)."""

    model: str
    tenant_id: str
    weights: tuple[tuple[str, float], ...]
    rollout_id: str | None = None
    sticky: bool = False

    def draw(self, user_id: str, random_u: float) -> float:
        """The ``u`` to pick with: the random one, or a stable hash of the user (sticky)."""
        if not self.sticky:
            return random_u
        digest = hashlib.blake2b(f"{self.rollout_id}/{user_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64

    def pick(self, u: float) -> str:
        """The version for a draw ``u`` in [0, 1) (random, or a hash of the user: sticky)."""
        total = 0.0
        for version, weight in self.weights:
            total += weight
            if u < total:
                return version
        return self.weights[-1][0]


class ModelRegistry:
    def __init__(self) -> None:
        self.deployments: dict[str, Deployment] = {}
        self.rollouts: dict[str, Rollout] = {}
        self.declared: dict[str, rev.RolloutDeclared] = {}  # not started yet, by rollout id
        self.version = 0
        self.changes: list[rev.ModelEvent | rev.RolloutEvent] = []

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], version: int) -> ModelRegistry:
        return cls().replay(events, version)

    def replay(self, events: Iterable[ev.Event], version: int) -> ModelRegistry:
        """Apply recorded events, those after ``self.version``, up to ``version``."""
        for event in events:
            if isinstance(event, rev.ModelEvent):
                self._apply(event)
            elif isinstance(event, rev.RolloutDeclared):
                self.declared[event.rollout_id] = event
            elif isinstance(event, rev.RolloutStarted):
                self.declared.pop(event.rollout_id, None)
                self.rollouts[event.rollout_id] = Rollout(event)
            elif isinstance(event, rev.RolloutEvent):
                self.rollouts[event.rollout_id]._apply(event)
        self.version = version
        return self

    # --- queries ---------------------------------------------------------------------

    def visible(self, principal: Principal) -> list[Deployment]:
        """Live deployments of the principal's tenant and the shared ones."""
        tenants = usable_tenants(principal)
        return [d for d in self.deployments.values() if d.tenant_id in tenants and d.status in LIVE]

    def find(self, principal: Principal, name: str, version: str) -> Deployment:
        for tenant in usable_tenants(principal):
            found = self.deployments.get(deployment_key(tenant, name, version))
            if found is not None and found.status is not ModelStatus.UNDEPLOYED:
                return found
        raise NotFound(f"model {name}:{version} not found")

    def route(self, principal: Principal, model: str) -> Route:
        """The route of ``model`` (``name``, or ``name:version`` to pin a version)."""
        name, _, pinned = model.partition(":")
        ready = [
            d
            for d in self.visible(principal)
            if d.spec.name == name and d.status is ModelStatus.READY
        ]
        if not ready:
            raise NotFound(f"The model `{model}` does not exist or is not ready")
        tenant = principal.tenant_id
        if not any(d.tenant_id == tenant for d in ready):
            tenant = SHARED_TENANT
        ready = [d for d in ready if d.tenant_id == tenant]
        if pinned:
            if not any(d.spec.version == pinned for d in ready):
                raise NotFound(f"The model `{model}` does not exist or is not ready")
            return Route(name, tenant, ((pinned, 1.0),))
        rollout = self.active_rollout(tenant, name)
        if rollout is not None:
            versions = {d.spec.version for d in ready}
            weights = rollout.weights
            if rollout.new_version not in versions:  # not serving yet
                weights = ((rollout.current_version, 1.0),)
            return Route(name, tenant, weights, rollout.rollout_id, rollout.policy.sticky)
        newest = max(ready, key=lambda d: d.created_at)
        return Route(name, tenant, ((newest.spec.version, 1.0),))

    def active_rollout(self, tenant_id: str, name: str) -> Rollout | None:
        for rollout in self.rollouts.values():
            if rollout.in_progress and (rollout.tenant_id, rollout.model) == (tenant_id, name):
                return rollout
        return None

    def rollouts_of(self, principal: Principal) -> list[Rollout]:
        return [r for r in self.rollouts.values() if r.tenant_id in usable_tenants(principal)]

    def find_rollout(self, principal: Principal, rollout_id: str) -> Rollout:
        rollout = self.rollouts.get(rollout_id)
        if rollout is None or rollout.tenant_id not in usable_tenants(principal):
            raise NotFound(f"rollout {rollout_id} not found")
        return rollout

    # --- commands --------------------------------------------------------------------

    def deploy(self, principal: Principal, spec: ModelSpec, at: datetime, shared: bool) -> None:
        if shared and not principal.is_admin:
            raise PermissionDenied("only admins deploy shared models")
        spec = validated(spec)
        tenant = SHARED_TENANT if shared else principal.tenant_id
        existing = self.deployments.get(deployment_key(tenant, spec.name, spec.version))
        if existing is not None and existing.status in LIVE:
            raise Conflict(
                f"model {spec.name}:{spec.version} is already {existing.status.value.lower()}; "
                "undeploy it first or choose another version"
            )
        self._record(
            rev.ModelDeployRequested(
                tenant_id=tenant,
                name=spec.name,
                version=spec.version,
                at=at,
                spec=spec,
                requested_by=principal.user_id,
            )
        )

    def undeploy(self, principal: Principal, name: str, version: str, at: datetime) -> None:
        found = self.find(principal, name, version)
        check_manages(principal, found.tenant_id, "undeploy")
        if found.status is ModelStatus.UNDEPLOYING:
            return
        rollout = self.active_rollout(found.tenant_id, name)
        if rollout is not None and version in (rollout.current_version, rollout.new_version):
            raise Conflict(
                f"{name}:{version} is part of rollout {rollout.rollout_id}; "
                "promote or abort the rollout first"
            )
        self._retire(found, at, principal.user_id)

    # --- rollouts --------------------------------------------------------------------

    def start_rollout(
        self,
        principal: Principal,
        rollout_id: str,
        model: str,
        new_version: str,
        policy: RolloutPolicy,
        at: datetime,
        current_version: str | None = None,
        source: str | None = None,
    ) -> Rollout:
        """Start moving ``model``'s traffic to ``new_version``; deploys it beside the current
        version (same spec, ``source`` if given) unless it is already live."""
        route = self.route(principal, model)
        check_manages(principal, route.tenant_id, "roll out")
        if route.rollout_id is not None:
            raise Conflict(f"rollout {route.rollout_id} of {model} is already in progress")
        current = self.find(principal, model, current_version or route.weights[0][0])
        if current.status is not ModelStatus.READY:
            raise Conflict(f"{current.model_id} is {current.status.value.lower()}, not ready")
        existing = self.deployments.get(deployment_key(route.tenant_id, model, new_version))
        if existing is None or existing.status not in LIVE:
            spec = dataclasses.replace(
                current.spec, version=new_version, source=source or current.spec.source
            )
            self._record(
                rev.ModelDeployRequested(
                    tenant_id=route.tenant_id,
                    name=model,
                    version=new_version,
                    at=at,
                    spec=validated(spec),
                    requested_by=principal.user_id,
                )
            )
        rollout = Rollout.start(
            rollout_id, route.tenant_id, model, current.spec.version, new_version, policy, at,
            principal.user_id,
        )  # fmt: skip
        self.declared.pop(rollout_id, None)
        self._take(rollout)
        return rollout

    def declare_rollout(self, principal: Principal, declared: rev.RolloutDeclared) -> None:
        """Record a shared model's rollout for the controller to start when it can."""
        if not principal.is_admin or declared.tenant_id != SHARED_TENANT:
            raise PermissionDenied("only admins declare rollouts, of shared models")
        self.declared[declared.rollout_id] = declared
        self.changes.append(declared)

    def evaluate_rollout(
        self, rollout_id: str, at: datetime, current: VersionStats, candidate: VersionStats
    ) -> None:
        """The controller's scheduled decision on the window's figures."""
        rollout = self.rollouts[rollout_id]
        new = self.deployments.get(deployment_key(rollout.tenant_id, rollout.model,
                                                  rollout.new_version))  # fmt: skip
        if new is None or new.status in (ModelStatus.FAILED, ModelStatus.UNDEPLOYED):
            detail = new.detail if new is not None else "not deployed"
            rollout.abort(at, "controller", f"{rollout.new_version} failed to deploy: {detail}")
        elif new.status is not ModelStatus.READY:
            rollout.wait(at, f"waiting for {rollout.new_version} to be ready")
        else:
            rollout.evaluate(at, current, candidate)
        self._take(rollout)

    def promote_rollout(self, principal: Principal, rollout_id: str, at: datetime) -> Rollout:
        rollout = self._own_rollout(principal, rollout_id)
        rollout.promote(at, principal.user_id)
        self._take(rollout)
        return rollout

    def abort_rollout(self, principal: Principal, rollout_id: str, at: datetime) -> Rollout:
        rollout = self._own_rollout(principal, rollout_id)
        rollout.abort(at, principal.user_id)
        self._take(rollout)
        return rollout

    def _own_rollout(self, principal: Principal, rollout_id: str) -> Rollout:
        rollout = self.find_rollout(principal, rollout_id)
        check_manages(principal, rollout.tenant_id, "change rollouts of")
        return rollout

    def _take(self, rollout: Rollout) -> None:
        """Adopt the rollout's new decisions; a finished rollout retires the version it
        leaves behind, in the same append."""
        self.rollouts[rollout.rollout_id] = rollout
        self.changes.extend(rollout.changes)
        rollout.changes.clear()
        retired = rollout.retired_version
        if retired is None:
            return
        key = deployment_key(rollout.tenant_id, rollout.model, retired)
        found = self.deployments.get(key)
        if found is not None and found.status in (ModelStatus.DEPLOYING, ModelStatus.READY):
            self._retire(found, rollout.last_evaluated_at, f"rollout {rollout.rollout_id}")

    def _retire(self, d: Deployment, at: datetime, by: str) -> None:
        self._record(rev.ModelUndeployRequested(**_ids(d), at=at, requested_by=by))

    def set_faults(
        self, principal: Principal, name: str, version: str, faults: Faults, at: datetime
    ) -> None:
        found = self.find(principal, name, version)
        check_manages(principal, found.tenant_id, "inject faults into")
        if found.faults == faults:
            return
        self._record(
            rev.ModelFaultsSet(
                **_ids(found),
                at=at,
                error_rate=faults.error_rate,
                latency_ms=faults.latency_ms,
                set_by=principal.user_id,
            )
        )

    # --- what the model controller observes -------------------------------------------

    def deployed(self, key: str, at: datetime) -> None:
        d = self.deployments[key]
        if d.status is ModelStatus.DEPLOYING:
            self._record(rev.ModelDeployed(**_ids(d), at=at))

    def failed(self, key: str, at: datetime, error: str) -> None:
        d = self.deployments[key]
        if d.status is ModelStatus.DEPLOYING:
            self._record(rev.ModelDeployFailed(**_ids(d), at=at, error=error[:2000]))

    def health(self, key: str, at: datetime, healthy: bool, detail: str) -> None:
        d = self.deployments[key]
        if d.status is ModelStatus.READY and (d.healthy, d.detail) != (healthy, detail):
            self._record(rev.ModelHealthChanged(**_ids(d), at=at, healthy=healthy, detail=detail))

    def undeployed(self, key: str, at: datetime) -> None:
        d = self.deployments[key]
        if d.status is ModelStatus.UNDEPLOYING:
            self._record(rev.ModelUndeployed(**_ids(d), at=at))

    # --- state -----------------------------------------------------------------------

    def _record(self, event: rev.ModelEvent) -> None:
        self._apply(event)
        self.changes.append(event)

    def _apply(self, event: rev.ModelEvent) -> None:
        key = deployment_key(event.tenant_id, event.name, event.version)
        if isinstance(event, rev.ModelDeployRequested):
            self.deployments[key] = Deployment(
                spec=event.spec,
                tenant_id=event.tenant_id,
                requested_by=event.requested_by,
                status=ModelStatus.DEPLOYING,
                healthy=False,
                detail="deploying",
                created_at=event.at,
                updated_at=event.at,
            )
            return
        d = self.deployments[key]
        change: dict[str, object] = {"updated_at": event.at}
        if isinstance(event, rev.ModelDeployed):
            change |= {"status": ModelStatus.READY, "healthy": True, "detail": "serving"}
        elif isinstance(event, rev.ModelDeployFailed):
            change |= {"status": ModelStatus.FAILED, "healthy": False, "detail": event.error}
        elif isinstance(event, rev.ModelHealthChanged):
            change |= {"healthy": event.healthy, "detail": event.detail}
        elif isinstance(event, rev.ModelUndeployRequested):
            change |= {"status": ModelStatus.UNDEPLOYING, "detail": "undeploying"}
        elif isinstance(event, rev.ModelFaultsSet):
            change["faults"] = Faults(event.error_rate, event.latency_ms)
        elif isinstance(event, rev.ModelUndeployed):
            change |= {"status": ModelStatus.UNDEPLOYED, "healthy": False, "detail": "removed"}
        self.deployments[key] = dataclasses.replace(d, **change)  # type: ignore[arg-type]


def _ids(d: Deployment) -> dict[str, str]:
    return {"tenant_id": d.tenant_id, "name": d.spec.name, "version": d.spec.version}
