"""The task aggregate: its status machine, rebuilt from its own events.

    SUBMITTED → QUEUED → SCHEDULED → RUNNING → SUCCEEDED | FAILED | CANCELLED

Any unfinished task may fail or be cancelled; a scheduled or running task may be requeued
(its node went away). Everything else raises ``IllegalTransition``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from prsm.domain import events as ev
from prsm.domain.errors import IllegalTransition, InvalidRequest
from prsm.domain.placement import PlacementRequest


class TaskStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class CoordinationStrategy(StrEnum):
    SEQUENTIAL = "SEQUENTIAL"
    PARALLEL = "PARALLEL"
    PIPELINE = "PIPELINE"
    MAP_REDUCE = "MAP_REDUCE"


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_ENDINGS = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.SUBMITTED: frozenset({TaskStatus.QUEUED}) | _ENDINGS,
    TaskStatus.QUEUED: frozenset({TaskStatus.SCHEDULED}) | _ENDINGS,
    TaskStatus.SCHEDULED: frozenset({TaskStatus.RUNNING, TaskStatus.QUEUED}) | _ENDINGS,
    TaskStatus.RUNNING: frozenset({TaskStatus.SUCCEEDED, TaskStatus.QUEUED}) | _ENDINGS,
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}

TASK_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ResourceRequest:
    cpu: float = 1.0
    gpu: float = 0.0
    memory_mb: int = 0

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.gpu < 0 or self.memory_mb < 0:
            raise InvalidRequest(
                f"resources must not be negative: cpu={self.cpu}, gpu={self.gpu}, "
                f"memory_mb={self.memory_mb}"
            )


def request_hash(payload: dict[str, Any]) -> str:
    """A stable digest of a submission, to tell an idempotent replay from a key reused for a
    different request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Task:
    task_id: str
    task_type: str
    params: dict[str, Any]
    priority: int
    user_id: str
    tenant_id: str
    resources: ResourceRequest
    dependencies: tuple[str, ...]
    strategy: CoordinationStrategy
    submitted_at: datetime
    request_hash: str
    placement: PlacementRequest = field(default_factory=PlacementRequest)
    allocation: dict[str, Any] | None = None  # what the scheduler reserved (``TaskScheduled``)
    origin: tuple[str, str] = ("", "")  # (region, zone) where it was submitted
    skills: list[dict[str, Any]] = field(default_factory=list)  # resolved at submit
    runtime_env: dict[str, Any] = field(default_factory=dict)  # the code it ships
    correlation_id: str = ""  # the request that submitted it ("": not known)
    status: TaskStatus = TaskStatus.SUBMITTED
    progress: float = 0.0
    result_ref: str | None = None
    error: str | None = None
    result: Any = None
    version: int = 0
    changes: list[ev.Event] = field(default_factory=list, repr=False)

    @property
    def ships_code(self) -> bool:
        """It brings code the platform does not have installed."""
        return bool(self.runtime_env) or any(s.get("origin") != "installed" for s in self.skills)

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def submit(cls, submitted: ev.TaskSubmitted) -> Task:
        """Start a task's history: it is submitted and queued at once."""
        if not TASK_TYPE_PATTERN.match(submitted.task_type):
            raise InvalidRequest(
                f"task type {submitted.task_type!r} must match {TASK_TYPE_PATTERN.pattern}"
            )
        if submitted.task_id in submitted.dependencies:
            raise InvalidRequest(f"task {submitted.task_id} cannot depend on itself")
        task = cls._from_submitted(submitted)
        task.changes.append(submitted)
        task._record(ev.TaskQueued(task_id=task.task_id, at=submitted.submitted_at))
        return task

    @classmethod
    def from_events(cls, history: list[ev.Event], version: int | None = None) -> Task:
        first = history[0]
        if not isinstance(first, ev.TaskSubmitted):
            raise ValueError(f"a task stream starts with TaskSubmitted, not {first!r}")
        task = cls._from_submitted(first)
        for event in history[1:]:
            task._apply(event)
        task.version = len(history) if version is None else version
        return task

    @classmethod
    def _from_submitted(cls, e: ev.TaskSubmitted) -> Task:
        return cls(
            task_id=e.task_id,
            task_type=e.task_type,
            params=e.params,
            priority=e.priority,
            user_id=e.user_id,
            tenant_id=e.tenant_id,
            resources=ResourceRequest(cpu=e.cpu, gpu=e.gpu, memory_mb=e.memory_mb),
            dependencies=e.dependencies,
            strategy=CoordinationStrategy(e.strategy),
            submitted_at=e.submitted_at,
            request_hash=e.request_hash,
            placement=PlacementRequest.from_dict(e.placement),
            origin=(e.origin_region, e.origin_zone),
            skills=e.skills,
            runtime_env=e.runtime_env,
            correlation_id=e.correlation_id,
        )

    def follow(self, event: ev.Event, version: int) -> None:
        """Apply an event another writer recorded at stream ``version`` (a follower of the
        log keeping its copy current); events it already holds are skipped."""
        if version > self.version:
            self._apply(event)
            self.version = version

    # -- behaviour -----------------------------------------------------------------------

    def schedule(self, at: datetime, placement: dict[str, Any]) -> None:
        self._record(ev.TaskScheduled(task_id=self.task_id, at=at, placement=placement))

    def start(self, at: datetime) -> None:
        self._record(ev.TaskStarted(task_id=self.task_id, at=at))

    def report_progress(self, at: datetime, progress: float) -> None:
        if self.status is not TaskStatus.RUNNING:
            raise IllegalTransition(f"task {self.task_id} is {self.status}, not RUNNING")
        if not 0.0 <= progress <= 100.0:
            raise InvalidRequest(f"progress must be within 0..100, got {progress}")
        self._record(ev.TaskProgressed(task_id=self.task_id, at=at, progress=progress))

    def requeue(self, at: datetime, reason: str) -> None:
        self._record(ev.TaskRequeued(task_id=self.task_id, at=at, reason=reason))

    def succeed(self, at: datetime, result_ref: str | None, result: Any = None) -> None:
        self._record(
            ev.TaskSucceeded(task_id=self.task_id, at=at, result_ref=result_ref, result=result)
        )

    def fail(self, at: datetime, error: str, result: Any = None) -> None:
        self._record(ev.TaskFailed(task_id=self.task_id, at=at, error=error, result=result))

    def cancel(self, at: datetime, reason: str, cancelled_by: str) -> None:
        self._record(
            ev.TaskCancelled(task_id=self.task_id, at=at, reason=reason, cancelled_by=cancelled_by)
        )

    # -- state ---------------------------------------------------------------------------

    def _record(self, event: ev.Event) -> None:
        self._apply(event)
        self.changes.append(event)

    def _apply(self, event: ev.Event) -> None:
        target = STATUS_AFTER.get(type(event))
        if target is not None:
            if target not in TRANSITIONS[self.status]:
                raise IllegalTransition(
                    f"task {self.task_id} cannot go from {self.status} to {target}"
                )
            self.status = target
        if isinstance(event, ev.TaskScheduled):
            self.allocation = event.placement
        for name, value in fields_set_by(event).items():
            setattr(self, name, value)


def fields_set_by(event: ev.Event) -> dict[str, Any]:
    """What an event sets on a task besides its status (shared with the task view)."""
    match event:
        case ev.TaskProgressed(progress=progress):
            return {"progress": progress}
        case ev.TaskSucceeded(result_ref=ref, result=result):
            return {"progress": 100.0, "result_ref": ref, "result": result}
        case ev.TaskFailed(error=error, result=result):
            return {"error": error, "result": result}
        case ev.TaskCancelled(reason=reason):
            return {"error": reason}
    return {}


STATUS_AFTER: dict[type[ev.Event], TaskStatus] = {
    ev.TaskQueued: TaskStatus.QUEUED,
    ev.TaskScheduled: TaskStatus.SCHEDULED,
    ev.TaskStarted: TaskStatus.RUNNING,
    ev.TaskRequeued: TaskStatus.QUEUED,
    ev.TaskSucceeded: TaskStatus.SUCCEEDED,
    ev.TaskFailed: TaskStatus.FAILED,
    ev.TaskCancelled: TaskStatus.CANCELLED,
}
