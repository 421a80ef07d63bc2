"""Read-side queries over the views, with the visibility rule applied."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.errors import InvalidRequest, NotFound
from prsm.domain.identity import Principal, can_see_task
from prsm.domain.tasks import TaskStatus
from prsm.service_layer.handlers import parse_task_id
from prsm.service_layer.ports import EventStore, TaskViews
from prsm.service_layer.views import TaskPage, TaskQuery, TaskView

MAX_PAGE = 500
MAX_CURSOR = 2**63 - 1  # cursors are log positions: 64-bit integers in both stores


async def get_task(views: TaskViews, principal: Principal, task_id: str) -> TaskView:
    row = await views.get(parse_task_id(task_id))
    if row is None or not can_see_task(principal, row.tenant_id, row.user_id):
        raise NotFound(f"task {task_id} not found")
    return row


async def list_tasks(
    views: TaskViews,
    principal: Principal,
    status: TaskStatus | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> TaskPage:
    """The caller's own tasks, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE}, got {limit}")
    if cursor is not None and not 1 <= cursor <= MAX_CURSOR:
        raise InvalidRequest(f"cursor must be within 1..{MAX_CURSOR}, got {cursor}")
    query = TaskQuery(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        status=status,
        limit=limit,
        before_seq=cursor,
    )
    return await views.list(query)


@dataclass(frozen=True)
class WorkPlace:
    """Where some of a task's subtasks ran: a Ray node, and the bundle of the task's
    placement group (``None``: a pooled agent), with how many completed and failed there."""

    node_id: str
    bundle: int | None
    completed: int
    failed: int


async def where_it_ran(store: EventStore, task_id: str) -> list[WorkPlace]:
    """Every place a task's subtasks ran, from its run's record (stream ``run-<task>``);
    the caller has checked that the task is visible."""
    done: Counter[tuple[str, int | None]] = Counter()
    failed: Counter[tuple[str, int | None]] = Counter()
    for r in await store.read_stream(streams.run(task_id)):
        e = r.event
        if isinstance(e, ev.SubtaskCompleted):
            done[e.node_id, e.bundle] += 1
        elif isinstance(e, ev.SubtaskFailed):
            failed[e.node_id, e.bundle] += 1
    places = sorted(done.keys() | failed.keys(), key=lambda p: (p[1] is None, p[1] or 0, p[0]))
    return [WorkPlace(node, bundle, done[node, bundle], failed[node, bundle])
            for node, bundle in places]  # fmt: skip


@dataclass
class SubtaskRecord:
    """One subtask of a task's run: its last try's outcome and where it ran."""

    key: str
    status: str  # succeeded, failed (out of tries), retrying (a try failed, another comes)
    tries: int
    agent_id: str
    node_id: str
    bundle: int | None
    seconds: float | None  # the successful try's run time
    error: str | None  # the last failed try's error


async def subtasks(store: EventStore, task_id: str) -> list[SubtaskRecord]:
    """The subtasks a task's run has finished or retried, in the order they first did
    (from stream ``run-<task>``); the caller has checked that the task is visible."""
    found: dict[str, SubtaskRecord] = {}
    for r in await store.read_stream(streams.run(task_id)):
        e = r.event
        if not isinstance(e, ev.SubtaskCompleted | ev.SubtaskFailed):
            continue
        sub = found.get(e.key)
        if sub is None:
            sub = found[e.key] = SubtaskRecord(e.key, "", 0, "", "", None, None, None)
        sub.tries += 1
        sub.agent_id, sub.node_id, sub.bundle = e.agent_id, e.node_id, e.bundle
        if isinstance(e, ev.SubtaskCompleted):
            sub.status, sub.seconds = "succeeded", e.seconds
        else:
            sub.status, sub.error = ("failed" if e.final else "retrying"), e.error
    return list(found.values())


async def submitted(store: EventStore, task_id: str) -> ev.TaskSubmitted:
    """The task as submitted (its skills and runtime_env); the caller has checked that the
    task is visible."""
    first = (await store.read_stream(streams.task(task_id)))[0].event
    assert isinstance(first, ev.TaskSubmitted)
    return first
