"""Tasks on the wire: what ``/v1/tasks`` takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from prsm.api import task_params as tp
from prsm.domain.placement import PlacementStrategy
from prsm.domain.tasks import CoordinationStrategy, ResourceRequest, TaskStatus

CS = CoordinationStrategy

_DEFAULT = ResourceRequest()  # the one source of the defaults


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    cpu: float = Field(default=_DEFAULT.cpu, ge=0, le=4096, description="CPU cores")
    gpu: float = Field(default=_DEFAULT.gpu, ge=0, le=512, description="GPUs")
    memory_mb: int = Field(
        default=_DEFAULT.memory_mb, ge=0, le=64 * 1024 * 1024, description="Memory in MiB"
    )


class PlacementIn(BaseModel):
    """Where the task's resources go; left out, the scheduler chooses from the task."""

    model_config = ConfigDict(extra="forbid")

    strategy: PlacementStrategy | None = Field(
        default=None, description="consolidation (few nodes), distribution (spread) or "
        "latency (one zone)",
    )  # fmt: skip
    strict: bool = Field(default=False, description="distribution: one node per bundle")
    zone: str = Field(default="", max_length=63, pattern=r"^[A-Za-z0-9._-]*$",
                      description="latency: the zone to stay in (empty: the best one)")  # fmt: skip
    bundles: int = Field(default=1, ge=1, le=64, description="Split the request into bundles")


class RuntimeEnvIn(BaseModel):
    """Code the task ships: packages uploaded with ``POST /v1/packages`` (the SDK and CLI
    upload local folders and wheels and fill these in), pip requirements, variables."""

    model_config = ConfigDict(extra="forbid")

    working_dir: str | None = Field(
        default=None, description="An uploaded .zip package: sha256:<hex>/<name>.zip"
    )
    py_modules: list[str] = Field(default_factory=list, max_length=50,
                                  description="Uploaded .zip or .whl packages")  # fmt: skip
    pip: list[str] = Field(
        default_factory=list, max_length=50,
        description="Requirements, or uploaded wheels (sha256:<hex>/x.whl)",
    )  # fmt: skip
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment variables")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class SkillUsed(BaseModel):
    """A skill a task runs, as resolved at submit: exactly which code."""

    name: str
    kind: str
    origin: str = Field(description="installed, registered or reference")
    code: str = Field(description="module:function")
    version: str
    code_hash: str = Field(description="sha256 of its code (a reference: of the runtime_env)")


class _TaskBody(BaseModel):
    """What every task type takes besides its ``type``, ``params`` and ``strategy``."""

    model_config = ConfigDict(extra="forbid")

    priority: int = Field(default=0, ge=-100, le=100, description="Higher runs first")
    resources: Resources = Field(default_factory=Resources)
    dependencies: list[UUID] = Field(
        default_factory=list, max_length=100, description="Tasks that must succeed first"
    )
    placement: PlacementIn = Field(default_factory=PlacementIn)
    runtime_env: RuntimeEnvIn | None = Field(
        default=None, description="Code the task ships (needs the skills:write scope)"
    )


_STRATEGY = "Coordination strategy; the first one listed if left out"


class MapTask(_TaskBody):
    """A skill over items, in parallel (or one after another)."""

    type: Literal["map"]
    params: tp.MapParams
    strategy: Literal[CS.PARALLEL, CS.SEQUENTIAL] | None = Field(
        default=None, description=_STRATEGY
    )


class MapReduceTask(_TaskBody):
    """A skill over items, then a reduce skill over the outputs."""

    type: Literal["map_reduce"]
    params: tp.MapReduceParams
    strategy: Literal[CS.MAP_REDUCE] | None = Field(default=None, description=_STRATEGY)


class PipelineTask(_TaskBody):
    """Items through stages of skills, streaming from stage to stage."""

    type: Literal["pipeline"]
    params: tp.PipelineParams
    strategy: Literal[CS.PIPELINE, CS.SEQUENTIAL] | None = Field(
        default=None, description=_STRATEGY
    )


class SweepTask(_TaskBody):
    """A simulation over parameter sets, its statistics and outliers."""

    type: Literal["sweep"]
    params: tp.SweepParams
    strategy: Literal[CS.PARALLEL, CS.SEQUENTIAL] | None = Field(
        default=None, description=_STRATEGY
    )


class PromptTask(_TaskBody):
    """Prompts answered by a model."""

    type: Literal["prompt"]
    params: tp.PromptParams
    strategy: Literal[CS.PARALLEL, CS.SEQUENTIAL] | None = Field(
        default=None, description=_STRATEGY
    )


TaskCreate = Annotated[
    MapTask | MapReduceTask | PipelineTask | SweepTask | PromptTask, Field(discriminator="type")
]
"""One task to submit: a body per task type, told apart by ``type``."""
TASK_CREATE: TypeAdapter[TaskCreate] = TypeAdapter(TaskCreate)


class TaskBatchCreate(BaseModel):
    """Several tasks, submitted atomically."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=1000)


class QueueInfo(BaseModel):
    position: int = Field(description="1: next to start")
    estimated_start_s: float = Field(description="Seconds until it is expected to start")
    reason: str | None = Field(default=None, description="Why it waits, when it cannot start")


class WorkPlaceOut(BaseModel):
    node_id: str = Field(description="The Ray node")
    bundle: int | None = Field(description="Bundle of the task's placement group; null: a "
                               "pooled agent (a task without a reservation)")  # fmt: skip
    completed: int = Field(description="Subtasks that completed there")
    failed: int = Field(description="Failed tries there")


class SubtaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str = Field(description="The subtask within its task (an item's index, a stage's)")
    status: Literal["succeeded", "failed", "retrying"] = Field(
        description="failed: out of tries; retrying: a try failed and another comes"
    )
    tries: int
    agent_id: str = Field(description="The agent of its last try")
    node_id: str = Field(description="The Ray node of its last try")
    bundle: int | None = Field(description="Bundle of the task's placement group; null: pooled")
    seconds: float | None = Field(description="Run time of the successful try")
    error: str | None = Field(description="The last failed try's error")


class SubtaskPage(BaseModel):
    subtasks: list[SubtaskOut]
    total: int = Field(description="Subtasks finished or retried so far")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: str = Field(validation_alias="task_id")
    type: str = Field(validation_alias="task_type")
    status: TaskStatus
    priority: int
    progress: float
    user_id: str
    tenant_id: str
    strategy: CoordinationStrategy
    params: dict[str, Any]
    dependencies: list[str]
    resources: Resources
    submitted_at: datetime
    updated_at: datetime | None = None
    result_ref: str | None = None
    error: str | None = None
    result: Any = Field(default=None, description="The result, once the task has finished")
    queue: QueueInfo | None = Field(default=None, description="Where a queued task stands")
    ran_on: list[WorkPlaceOut] | None = Field(
        default=None, description="Where its subtasks ran (`GET /v1/tasks/{id}` only)"
    )
    skills: list[SkillUsed] | None = Field(
        default=None, description="The code it runs (`GET /v1/tasks/{id}` only)"
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None, description="The code it ships (`GET /v1/tasks/{id}` only)"
    )


class PackageOut(BaseModel):
    ref: str = Field(description="Name it in a runtime_env: sha256:<hex>/<file name>")
    bytes: int


class TaskBatchOut(BaseModel):
    tasks: list[TaskOut]


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page")
