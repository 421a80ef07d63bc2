"""Conversions between database rows and the records both SQL adapters share."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from prsm.adapters.store.codec import decode_event, decode_metadata
from prsm.domain.events import LoggedEvent, RecordedEvent
from prsm.domain.tasks import ResourceRequest, TaskStatus
from prsm.service_layer.views import TaskView


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


EVENT_COLUMNS = "position, stream_id, version, event_type, data, metadata"
LOGGED_COLUMNS = "position, stream_id, version, event_type, data"

TASK_VIEW_COLUMNS = (
    "task_id", "seq", "tenant_id", "user_id", "task_type", "status", "priority", "progress",
    "strategy", "params", "dependencies", "cpu", "gpu", "memory_mb", "submitted_at",
    "updated_at", "result_ref", "error", "result",
)  # fmt: skip


def recorded(row: Row) -> RecordedEvent:
    return RecordedEvent(
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        event=decode_event(row["event_type"], row["data"]),
        metadata=decode_metadata(row["metadata"]),
    )


def logged(row: Row) -> LoggedEvent:
    return LoggedEvent(
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        event=decode_event(row["event_type"], row["data"]),
    )


def task_view_values(view: TaskView, when: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The view as a row, in ``TASK_VIEW_COLUMNS`` order; ``when`` encodes datetimes."""
    return (
        view.task_id, view.seq, view.tenant_id, view.user_id, view.task_type,
        view.status.value, view.priority, view.progress, view.strategy,
        json.dumps(view.params), json.dumps(list(view.dependencies)), view.resources.cpu,
        view.resources.gpu, view.resources.memory_mb, when(view.submitted_at),
        when(view.updated_at), view.result_ref, view.error,
        None if view.result is None else json.dumps(view.result),
    )  # fmt: skip


def view_updates(updates: dict[str, dict[str, Any]], when: Callable[[datetime], Any]
                 ) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:  # fmt: skip
    """Column changes of task views (``ViewChanges.updates``), grouped by the columns they
    set, each as ``(values..., task_id)`` in the columns' order."""
    grouped: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for task_id, changes in updates.items():
        columns = tuple(sorted(changes))
        values = tuple(_column(c, changes[c], when) for c in columns)
        grouped.setdefault(columns, []).append((*values, task_id))
    return grouped


def _column(name: str, value: Any, when: Callable[[datetime], Any]) -> Any:
    if name == "status":
        return value.value
    if name == "updated_at":
        return when(value)
    if name == "result":
        return None if value is None else json.dumps(value)
    return value


def task_view(row: Row, when: Callable[[Any], datetime]) -> TaskView:
    return TaskView(
        task_id=row["task_id"],
        seq=row["seq"],
        task_type=row["task_type"],
        status=TaskStatus(row["status"]),
        priority=row["priority"],
        progress=row["progress"],
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        strategy=row["strategy"],
        params=json.loads(row["params"]),
        dependencies=tuple(json.loads(row["dependencies"])),
        resources=ResourceRequest(cpu=row["cpu"], gpu=row["gpu"], memory_mb=row["memory_mb"]),
        submitted_at=when(row["submitted_at"]),
        updated_at=when(row["updated_at"]),
        result_ref=row["result_ref"],
        error=row["error"],
        result=None if row["result"] is None else json.loads(row["result"]),
    )
