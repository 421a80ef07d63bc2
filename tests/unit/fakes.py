"""An in-memory event store and task views: the ports' contract, without a database."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from prsm.domain.errors import ConcurrencyError
from prsm.domain.events import TASK_EVENT_NAMES, LoggedEvent, RecordedEvent
from prsm.service_layer.ports import LogPage, StreamWrite
from prsm.service_layer.views import TaskPage, TaskQuery, TaskView, project_tasks


class FakeStore:
    def __init__(self) -> None:
        self.log: list[RecordedEvent] = []
        self.views: dict[str, TaskView] = {}
        self.position = 0

    async def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        for w in writes:
            actual = len([r for r in self.log if r.stream_id == w.stream_id])
            if w.expected_version is not None and w.expected_version != actual:
                raise ConcurrencyError(w.stream_id, w.expected_version, actual)
        out = []
        for w in writes:
            version = len([r for r in self.log if r.stream_id == w.stream_id])
            for new in w.events:
                version += 1
                recorded = RecordedEvent(
                    w.stream_id, version, len(self.log) + 1, new.event, new.metadata
                )
                self.log.append(recorded)
                out.append(recorded)
        return out

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        return [r for r in self.log if r.stream_id == stream_id]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return self.log[after : after + limit]

    async def read_log(self, after: int, types: Collection[str], span: int = 2000) -> LogPage:
        end = max(after, min(after + span, len(self.log)))
        found = [LoggedEvent(r.stream_id, r.version, r.position, r.event)
                 for r in self.log[after:end] if r.event.type_name() in types]  # fmt: skip
        return LogPage(found, end, len(self.log) > end)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def catch_up(self) -> int:
        batch = [r for r in self.log[self.position :] if r.event.type_name() in TASK_EVENT_NAMES]
        changes = project_tasks(batch)
        self.views.update(changes.new)
        for task_id, columns in changes.updates.items():
            if task_id in self.views:
                self.views[task_id] = dataclasses.replace(self.views[task_id], **columns)
        self.position = len(self.log)
        return len(batch)

    async def get(self, task_id: str) -> TaskView | None:
        return self.views.get(task_id)

    async def list(self, query: TaskQuery) -> TaskPage:
        rows = sorted(
            (
                v
                for v in self.views.values()
                if (v.tenant_id, v.user_id) == (query.tenant_id, query.user_id)
                and (query.status is None or v.status == query.status)
                and (query.before_seq is None or v.seq < query.before_seq)
            ),
            key=lambda v: -v.seq,
        )
        page = rows[: query.limit]
        return TaskPage(page, page[-1].seq if len(rows) > query.limit else None)
