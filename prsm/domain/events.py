"""Events: past-tense facts, plain frozen dataclasses.

An event's payload is the dataclass; what the platform knows about it (id, correlation,
causation, source, time, schema version) is its ``EventMetadata``. The aggregate id and version
and the global position are given by the event store when it records the event
(``RecordedEvent``; ``LoggedEvent`` without the metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from prsm.domain.ids import new_id


@dataclass(frozen=True, kw_only=True)
class Event:
    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__


@dataclass(frozen=True, kw_only=True)
class EventMetadata:
    occurred_at: datetime
    source: str
    correlation_id: str
    causation_id: str | None = None
    event_id: str = field(default_factory=new_id)
    schema_version: int = 1


@dataclass(frozen=True)
class NewEvent:
    """An event with its metadata, about to be appended."""

    event: Event
    metadata: EventMetadata


@dataclass(frozen=True)
class LoggedEvent:
    """An event at its place in the log: ``version`` counts from 1 within its stream,
    ``position`` from 1 across the whole log, gap-free and in commit order. Followers of
    the log read events in this form, without their metadata."""

    stream_id: str
    version: int
    position: int
    event: Event


@dataclass(frozen=True)
class RecordedEvent(LoggedEvent):
    """An event as stored, with its metadata."""

    metadata: EventMetadata


# --- tasks -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskSubmitted(Event):
    task_id: str
    task_type: str
    params: dict[str, Any]
    priority: int
    user_id: str
    tenant_id: str
    cpu: float
    gpu: float
    memory_mb: int
    dependencies: tuple[str, ...]
    strategy: str
    submitted_at: datetime
    request_hash: str
    placement: dict[str, Any] = field(default_factory=dict)  # a PlacementRequest
    origin_region: str = ""  # where it was submitted: the gateway replica's node's labels
    origin_zone: str = ""
    skills: list[dict[str, Any]] = field(default_factory=list)  # each a ``Skill.record()``
    runtime_env: dict[str, Any] = field(default_factory=dict)  # the code it ships
    # The id of the request that submitted it (its metadata's correlation id, kept here for
    # the followers of the log, which read events without metadata; "" before it was kept).
    correlation_id: str = ""


@dataclass(frozen=True, kw_only=True)
class TaskQueued(Event):
    task_id: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskScheduled(Event):
    task_id: str
    at: datetime
    placement: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class TaskStarted(Event):
    task_id: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskProgressed(Event):
    task_id: str
    at: datetime
    progress: float


@dataclass(frozen=True, kw_only=True)
class TaskRequeued(Event):
    task_id: str
    at: datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class TaskSucceeded(Event):
    task_id: str
    at: datetime
    result_ref: str | None
    result: Any = None


@dataclass(frozen=True, kw_only=True)
class AllocationMoved(Event):
    """A node of the task's placement group left; Ray placed its bundles again here."""

    task_id: str
    at: datetime
    nodes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AllocationReleased(Event):
    """The task's placement group was removed (it ended, was cancelled, or requeued)."""

    task_id: str
    at: datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class TaskFailed(Event):
    task_id: str
    at: datetime
    error: str
    result: Any = None  # e.g. which subtasks failed


@dataclass(frozen=True, kw_only=True)
class TaskCancelled(Event):
    task_id: str
    at: datetime
    reason: str
    cancelled_by: str


TASK_EVENTS: tuple[type[Event], ...] = (
    TaskSubmitted,
    TaskQueued,
    TaskScheduled,
    TaskStarted,
    TaskProgressed,
    TaskRequeued,
    TaskSucceeded,
    TaskFailed,
    TaskCancelled,
    AllocationMoved,
    AllocationReleased,
)
TASK_EVENT_NAMES: frozenset[str] = frozenset(cls.type_name() for cls in TASK_EVENTS)


# --- audit (one stream, appended by every gateway replica) -------------------------------


@dataclass(frozen=True, kw_only=True)
class AccessDecided(Event):
    """One authentication or authorisation decision. Never holds a credential."""

    at: datetime
    allowed: bool
    stage: str  # authentication | authorization | rate_limit
    reason: str
    method: str
    route: str
    scope: str
    user_id: str | None
    tenant_id: str | None
    credential: str | None  # "token" or an API key's id
    correlation_id: str
    client: str | None


# --- API keys (a stream per key, and one per owner listing them) -------------------------


@dataclass(frozen=True, kw_only=True)
class ApiKeyCreated(Event):
    key_id: str
    tenant_id: str
    user_id: str
    name: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...] | None
    secret_sha256: str  # the key itself is shown once and never stored
    at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class ApiKeyRevoked(Event):
    key_id: str
    at: datetime
    revoked_by: str


# --- orchestration: subtasks (stream ``run-{task_id}``) and agents (stream ``agents``) -------


@dataclass(frozen=True, kw_only=True)
class SubtaskCompleted(Event):
    task_id: str
    key: str
    agent_id: str
    output: Any
    seconds: float
    node_id: str = ""  # where it ran: the agent's Ray node,
    bundle: int | None = None  # and its bundle of the task's placement group (None: pooled)


@dataclass(frozen=True, kw_only=True)
class SubtaskFailed(Event):
    task_id: str
    key: str
    agent_id: str
    attempt: int
    error: str
    final: bool  # out of tries: the subtask failed for good
    node_id: str = ""
    bundle: int | None = None


@dataclass(frozen=True, kw_only=True)
class AgentRegistered(Event):
    agent_id: str
    agent_type: str
    capabilities: tuple[str, ...]
    cpu: float
    gpu: float
    memory_gb: float
    region: str
    zone: str
    node_id: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class AgentDrained(Event):
    agent_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class AgentRemoved(Event):
    agent_id: str
    reason: str
    at: datetime


RUN_EVENTS: tuple[type[Event], ...] = (SubtaskCompleted, SubtaskFailed)
AGENT_EVENTS: tuple[type[Event], ...] = (AgentRegistered, AgentDrained, AgentRemoved)
