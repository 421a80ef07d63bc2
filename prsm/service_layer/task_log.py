"""A follower of the event log that keeps tasks current: every task's status, and the whole
aggregate of each unfinished task it cares about. The scheduler and the orchestrator each keep
one; after a restart they read the log again from the start and know everything they knew.
Their changes go back in one transaction per pass (``write``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.errors import ConcurrencyError, PrsmError
from prsm.domain.tasks import STATUS_AFTER, Task, TaskStatus
from prsm.service_layer.handlers import load_task
from prsm.service_layer.ports import EventStore, StreamWrite
from prsm.service_layer.unit_of_work import append_leaving_out_conflicts

READ_SPAN = 2000  # positions per read

Mutation = Callable[[Task], None]


class TaskLog:
    def __init__(self, keep: Callable[[ev.TaskSubmitted], bool], source: str) -> None:
        self._keep = keep
        self.source = source
        self.position = 0
        self.status: dict[str, TaskStatus] = {}  # every task seen
        self.tasks: dict[str, Task] = {}  # unfinished tasks that ``keep`` accepted
        self.queued: set[str] = set()  # of those, the ones QUEUED now

    async def catch_up(self, store: EventStore) -> list[ev.LoggedEvent]:
        """Apply the task events recorded since the last call; return them."""
        seen: list[ev.LoggedEvent] = []
        while True:
            page = await store.read_log(self.position, ev.TASK_EVENT_NAMES, READ_SPAN)
            for r in page.events:
                self._apply(r)
            self.position = page.position
            seen.extend(page.events)
            if not page.more:
                return seen

    def _apply(self, r: ev.LoggedEvent) -> None:
        e = r.event
        if isinstance(e, ev.TaskSubmitted):
            self.status[e.task_id] = TaskStatus.SUBMITTED
            if self._keep(e):
                self.tasks[e.task_id] = Task.from_events([e], version=r.version)
                self.queued.add(e.task_id)  # (submitted tasks are queued at once)
            return
        task_id = getattr(e, "task_id", None)
        if task_id not in self.status or type(e) not in ev.TASK_EVENTS:
            return
        status = STATUS_AFTER.get(type(e))
        if status is not None:
            self.status[task_id] = status
        task = self.tasks.get(task_id)
        if task is not None:
            task.follow(e, r.version)
            self._track(task)

    async def write(self, store: EventStore, changes: Sequence[tuple[Task, Mutation]],
                    at: datetime) -> None:  # fmt: skip
        """Apply each change to its task and append them all in one transaction. A task
        that moved on meanwhile (e.g. cancelled by its owner) is reloaded and left out; a
        change the task refuses (an illegal transition) is dropped."""
        pending: dict[str, Task] = {}
        for task, change in changes:
            try:
                change(task)
                pending[task.task_id] = task
            except PrsmError:
                task.changes.clear()
        writes = {streams.task(t.task_id): StreamWrite(streams.task(t.task_id), t.version,
                                                       self._events(t, at))
                  for t in pending.values()}  # fmt: skip

        async def reload(exc: ConcurrencyError) -> None:  # it moved on: take it as stored
            await self._reload(store, streams.task_id_of(exc.stream_id))

        try:
            written = await append_leaving_out_conflicts(store, writes, reload)
        except Exception:  # nothing was written: take the tasks back as stored
            for stream_id in writes:
                await self._reload(store, streams.task_id_of(stream_id))
            raise
        for stream_id in written:
            t = pending[streams.task_id_of(stream_id)]
            t.version += len(t.changes)
            t.changes.clear()
            self.status[t.task_id] = t.status
            self._track(t)

    def _events(self, task: Task, at: datetime) -> list[ev.NewEvent]:
        # The runtime's writes about a task keep the id of the request that submitted it (the
        # task's stream for a task submitted before that id was kept); an event id each.
        correlation = task.correlation_id or streams.task(task.task_id)
        return [ev.NewEvent(e, ev.EventMetadata(occurred_at=at, source=self.source,
                                                correlation_id=correlation))
                for e in task.changes]  # fmt: skip

    def _track(self, task: Task) -> None:
        if task.status is TaskStatus.QUEUED:
            self.queued.add(task.task_id)
        else:
            self.queued.discard(task.task_id)
        if task.status.is_terminal:
            self.tasks.pop(task.task_id, None)

    async def _reload(self, store: EventStore, task_id: str) -> None:
        fresh = await load_task(store, task_id)
        self.status[task_id] = fresh.status
        self.tasks[task_id] = fresh
        self._track(fresh)
