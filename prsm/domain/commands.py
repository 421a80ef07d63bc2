"""Commands: imperative requests to change state, plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prsm.domain.identity import Principal
from prsm.domain.ids import new_id
from prsm.domain.models import Faults, ModelSpec
from prsm.domain.placement import PlacementRequest
from prsm.domain.rollout_policy import RolloutPolicy
from prsm.domain.skills import Skill
from prsm.domain.tasks import CoordinationStrategy, ResourceRequest


@dataclass(frozen=True, kw_only=True)
class Command:
    correlation_id: str
    command_id: str = field(default_factory=new_id)


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    task_type: str
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    resources_given: bool = True  # False: its skills' declared resources apply, if any
    dependencies: tuple[str, ...] = ()
    strategy: CoordinationStrategy | None = None  # None: the task type's default
    placement: PlacementRequest = field(default_factory=PlacementRequest)
    idempotency_key: str | None = None
    runtime_env: dict[str, Any] = field(default_factory=dict)  # the code it ships


@dataclass(frozen=True, kw_only=True)
class SubmitTasks(Command):
    """Submit one or more tasks in one atomic append. Tasks with an idempotency key that was
    already used by the same user are returned as they are, not submitted again."""

    principal: Principal
    specs: tuple[TaskSpec, ...]
    origin: tuple[str, str] = ("", "")  # (region, zone) of the gateway that took them


@dataclass(frozen=True, kw_only=True)
class CancelTask(Command):
    principal: Principal
    task_id: str
    reason: str = "cancelled by user"


@dataclass(frozen=True, kw_only=True)
class DeployModel(Command):
    """Register a model version and have it deployed; ``shared`` (admins only) makes it
    usable by every tenant."""

    principal: Principal
    spec: ModelSpec
    shared: bool = False


@dataclass(frozen=True, kw_only=True)
class SetModelFaults(Command):
    principal: Principal
    name: str
    version: str
    faults: Faults


@dataclass(frozen=True, kw_only=True)
class UndeployModel(Command):
    principal: Principal
    name: str
    version: str


@dataclass(frozen=True, kw_only=True)
class StartRollout(Command):
    """Deploy ``version`` of ``model`` beside its current version and move traffic to it."""

    principal: Principal
    model: str
    version: str
    policy: RolloutPolicy
    current_version: str | None = None
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class PromoteRollout(Command):
    principal: Principal
    rollout_id: str


@dataclass(frozen=True, kw_only=True)
class AbortRollout(Command):
    principal: Principal
    rollout_id: str


@dataclass(frozen=True, kw_only=True)
class RegisterSkill(Command):
    """Register a version of a skill whose code ships in its ``runtime_env``; ``shared``
    (admins only) registers it for every tenant."""

    principal: Principal
    skill: Skill
    shared: bool = False


@dataclass(frozen=True, kw_only=True)
class RetireSkill(Command):
    principal: Principal
    name: str
    version: str
    shared: bool = False
