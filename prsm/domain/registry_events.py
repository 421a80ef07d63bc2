"""Events of the model registry's stream: model deployments and their canary rollouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prsm.domain.events import Event
from prsm.domain.models import ModelSpec
from prsm.domain.rollout_policy import RolloutPolicy

# --- model deployments (all in one stream: the model registry) --------------------------


@dataclass(frozen=True, kw_only=True)
class ModelEvent(Event):
    tenant_id: str
    name: str
    version: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ModelDeployRequested(ModelEvent):
    spec: ModelSpec
    requested_by: str


@dataclass(frozen=True, kw_only=True)
class ModelDeployed(ModelEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class ModelDeployFailed(ModelEvent):
    error: str


@dataclass(frozen=True, kw_only=True)
class ModelHealthChanged(ModelEvent):
    healthy: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class ModelUndeployRequested(ModelEvent):
    requested_by: str


@dataclass(frozen=True, kw_only=True)
class ModelUndeployed(ModelEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class ModelFaultsSet(ModelEvent):
    """Faults injected into a version's traffic for drills (0 and 0: none)."""

    error_rate: float
    latency_ms: int
    set_by: str


MODEL_EVENTS: tuple[type[ModelEvent], ...] = (
    ModelDeployRequested,
    ModelDeployed,
    ModelDeployFailed,
    ModelHealthChanged,
    ModelUndeployRequested,
    ModelUndeployed,
    ModelFaultsSet,
)


# --- canary rollouts (in the model registry's stream) ---------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RolloutEvent(Event):
    rollout_id: str
    tenant_id: str
    model: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RolloutStarted(RolloutEvent):
    current_version: str
    new_version: str
    policy: RolloutPolicy
    started_by: str


@dataclass(frozen=True, kw_only=True)
class RolloutAdvanced(RolloutEvent):
    percent: float
    figures: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RolloutHeld(RolloutEvent):
    percent: float
    reason: str
    figures: dict[str, Any]
    no_data: bool = False
    waiting: bool = False  # the new version is not serving yet: its window starts again


@dataclass(frozen=True, kw_only=True)
class RolloutCompleted(RolloutEvent):
    percent: float
    figures: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RolloutRolledBack(RolloutEvent):
    percent: float
    reason: str
    figures: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RolloutAborted(RolloutEvent):
    percent: float
    reason: str
    figures: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RolloutDeclared(RolloutEvent):
    """A rollout declared ahead (by a Serve config, applied before any engine is up): the
    model controller starts it, with this id, once the version serving ``model`` is ready."""

    new_version: str
    current_version: str | None
    source: str | None
    policy: RolloutPolicy
    declared_by: str


ROLLOUT_EVENTS: tuple[type[RolloutEvent], ...] = (
    RolloutStarted,
    RolloutAdvanced,
    RolloutHeld,
    RolloutCompleted,
    RolloutRolledBack,
    RolloutAborted,
    RolloutDeclared,
)
