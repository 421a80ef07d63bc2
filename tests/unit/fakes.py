"""An in-memory event store and task views: the ports' contract, without a database.

``tests/integration/test_store_contract.py`` runs the store contract against this fake as
well as against SQLite and PostgreSQL, so the unit tests that use it stand on the same
behaviour as production."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from prsm.domain.errors import ConcurrencyError
from prsm.domain.events import TASK_EVENT_NAMES, LoggedEvent, RecordedEvent
from prsm.domain.registry_state import RegistryState
from prsm.service_layer.ports import EventStore, LogPage, StreamWrite, TaskViews
from prsm.service_layer.views import TaskPage, TaskQuery, TaskView, project_tasks


class FakeStore(EventStore, TaskViews):
    """Implements ``EventStore`` and ``TaskViews`` in memory: ``log`` is the whole log, in
    position order (an event's position is its index + 1)."""

    def __init__(self) -> None:
        self.log: list[RecordedEvent] = []
        self.versions: dict[str, int] = {}  # stream → its number of events
        self.views: dict[str, TaskView] = {}
        self.position = 0  # the views' position in the log
        self.snapshots: dict[str, RegistryState] = {}

    # -- event store ---------------------------------------------------------------------

    async def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        ids = [w.stream_id for w in writes]
        if len(set(ids)) != len(ids):
            raise ValueError("each stream may appear once per append")
        if not any(w.events for w in writes):
            return []
        for w in writes:  # every check before any write: all of the append, or none of it
            actual = self.versions.get(w.stream_id, 0)
            if w.expected_version is not None and w.expected_version != actual:
                raise ConcurrencyError(w.stream_id, w.expected_version, actual)
        out = []
        for w in writes:
            for new in w.events:
                version = self.versions[w.stream_id] = self.versions.get(w.stream_id, 0) + 1
                recorded = RecordedEvent(
                    w.stream_id, version, len(self.log) + 1, new.event, new.metadata
                )
                self.log.append(recorded)
                out.append(recorded)
        return out

    async def read_stream(self, stream_id: str, after: int = 0) -> list[RecordedEvent]:
        return [r for r in self.log if r.stream_id == stream_id and r.version > after]

    async def save_snapshot(self, stream_id: str, state: RegistryState) -> None:
        kept = self.snapshots.get(stream_id)
        if kept is None or state.version > kept.version:
            self.snapshots[stream_id] = state

    async def load_snapshot(self, stream_id: str) -> RegistryState | None:
        return self.snapshots.get(stream_id)

    async def read_log(self, after: int, types: Collection[str], span: int = 2000) -> LogPage:
        head = len(self.log)
        end = max(after, min(after + span, head))
        found = [LoggedEvent(r.stream_id, r.version, r.position, r.event)
                 for r in self.log[after:end] if r.event.type_name() in types]  # fmt: skip
        return LogPage(found, end, head > end)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- task views ----------------------------------------------------------------------

    async def catch_up(self, batch: int = 2000) -> int:
        applied = 0
        while True:
            page = await self.read_log(self.position, TASK_EVENT_NAMES, batch)
            changes = project_tasks(page.events)
            self.views.update(changes.new)
            for task_id, columns in changes.updates.items():
                if task_id in self.views:
                    self.views[task_id] = dataclasses.replace(self.views[task_id], **columns)
            self.position = page.position
            applied += len(page.events)
            if not page.more:
                return applied

    async def view_position(self) -> int:
        return self.position

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
