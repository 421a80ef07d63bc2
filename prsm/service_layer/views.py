"""Read models kept from the event log, and the pure projection that keeps them.

One table holds a row per task; it answers both the task status query (by id) and the user
tasks query (a user's tasks, newest first, by status, paged by a keyset cursor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prsm.domain import events as ev
from prsm.domain.tasks import STATUS_AFTER, ResourceRequest, TaskStatus, fields_set_by


@dataclass(frozen=True)
class TaskView:
    task_id: str
    seq: int
    task_type: str
    status: TaskStatus
    priority: int
    progress: float
    user_id: str
    tenant_id: str
    strategy: str
    params: dict[str, Any]
    dependencies: tuple[str, ...]
    resources: ResourceRequest
    submitted_at: datetime
    updated_at: datetime
    result_ref: str | None = None
    error: str | None = None
    result: Any = None


@dataclass(frozen=True)
class TaskQuery:
    tenant_id: str
    user_id: str
    status: TaskStatus | None = None
    limit: int = 50
    before_seq: int | None = None


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskView]
    next_cursor: int | None


@dataclass
class ViewChanges:
    """What a batch of events does to the task view: the rows of tasks submitted in the
    batch (with what later events of the batch did to them), and the columns to set on rows
    already stored. A change to a task the view does not hold changes nothing."""

    new: dict[str, TaskView] = dataclasses.field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def submitted_view(event: ev.TaskSubmitted, position: int) -> TaskView:
    return TaskView(
        task_id=event.task_id,
        seq=position,
        task_type=event.task_type,
        status=TaskStatus.SUBMITTED,
        priority=event.priority,
        progress=0.0,
        user_id=event.user_id,
        tenant_id=event.tenant_id,
        strategy=event.strategy,
        params=event.params,
        dependencies=event.dependencies,
        resources=ResourceRequest(cpu=event.cpu, gpu=event.gpu, memory_mb=event.memory_mb),
        submitted_at=event.submitted_at,
        updated_at=event.submitted_at,
    )


def view_changes(event: ev.Event) -> dict[str, Any]:
    """The columns a task event (other than ``TaskSubmitted``) sets on its task's view."""
    changes: dict[str, Any] = {}
    at = getattr(event, "at", None)
    if at is not None:
        changes["updated_at"] = at
    status = STATUS_AFTER.get(type(event))
    if status is not None:
        changes["status"] = status
    changes.update(fields_set_by(event))
    return changes


def project_tasks(batch: Iterable[ev.LoggedEvent]) -> ViewChanges:
    """The changes ``batch`` (in log order) makes to the task view."""
    out = ViewChanges()
    for recorded in batch:
        event = recorded.event
        if isinstance(event, ev.TaskSubmitted):
            out.new[event.task_id] = submitted_view(event, recorded.position)
            continue
        if type(event) not in ev.TASK_EVENTS:
            continue
        task_id: str = event.task_id  # type: ignore[attr-defined]
        changes = view_changes(event)
        if task_id in out.new:
            out.new[task_id] = dataclasses.replace(out.new[task_id], **changes)
        else:
            out.updates.setdefault(task_id, {}).update(changes)
    return out
