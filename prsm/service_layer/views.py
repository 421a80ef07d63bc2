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


def project_task(row: TaskView | None, recorded: ev.RecordedEvent) -> TaskView | None:
    """The task view after ``recorded``; ``None`` when the event does not concern tasks."""
    event = recorded.event
    if isinstance(event, ev.TaskSubmitted):
        return TaskView(
            task_id=event.task_id,
            seq=recorded.position,
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
    if row is None or type(event) not in ev.TASK_EVENTS:
        return None
    changes: dict[str, Any] = {"updated_at": getattr(event, "at", row.updated_at)}
    status = STATUS_AFTER.get(type(event))
    if status is not None:
        changes["status"] = status
    return dataclasses.replace(row, **changes, **fields_set_by(event))


def task_id_of(event: ev.Event) -> str | None:
    return getattr(event, "task_id", None) if type(event) in ev.TASK_EVENTS else None


def project_tasks(rows: dict[str, TaskView], batch: Iterable[ev.RecordedEvent]) -> set[str]:
    """Apply ``batch`` in order to ``rows`` (the current views of the tasks it concerns);
    return the ids of the rows that changed."""
    changed = set()
    for recorded in batch:
        task_id = task_id_of(recorded.event)
        if task_id is None:
            continue
        view = project_task(rows.get(task_id), recorded)
        if view is not None:
            rows[task_id] = view
            changed.add(task_id)
    return changed
