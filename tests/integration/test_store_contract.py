"""One contract, two event stores: every test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from prsm.domain import events as ev
from prsm.domain.errors import ConcurrencyError
from prsm.domain.tasks import TaskStatus
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.views import TaskQuery
from tests.integration import store_workers
from tests.support import StoreSpec, meta, now, queued, submitted


async def test_append_then_read_stream_in_version_order(store: Any) -> None:
    first = await store.append([StreamWrite("s1", 0, [queued("a"), queued("b")])])
    second = await store.append([StreamWrite("s1", 2, [queued("c")])])
    assert [r.version for r in first + second] == [1, 2, 3]

    stream = await store.read_stream("s1")
    assert [r.event.task_id for r in stream] == ["a", "b", "c"]
    assert [r.version for r in stream] == [1, 2, 3]
    assert stream[0].metadata == first[0].metadata
    assert await store.read_stream("nothing-here") == []


async def test_stale_expected_version_raises_and_writes_nothing(store: Any) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a")])])
    with pytest.raises(ConcurrencyError) as raised:
        await store.append(
            [StreamWrite("s2", 0, [queued("x")]), StreamWrite("s1", 0, [queued("b")])]
        )
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == ("s1", 0, 1)
    # Nothing of the failed append was written, not even the valid write to s2.
    assert await store.read_stream("s2") == []
    assert [r.position for r in await store.read_all()] == [1]


async def test_new_stream_must_not_exist(store: Any) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a")])])
    with pytest.raises(ConcurrencyError):
        await store.append([StreamWrite("s1", 0, [queued("again")])])


async def test_any_version_appends_without_check(store: Any) -> None:
    await store.append([StreamWrite("s1", None, [queued("a")])])
    recorded = await store.append([StreamWrite("s1", None, [queued("b")])])
    assert recorded[0].version == 2


async def test_read_all_from_a_position_with_a_limit(store: Any) -> None:
    for i in range(5):
        await store.append([StreamWrite(f"s{i}", 0, [queued(str(i)), queued(f"{i}'")])])
    everything = await store.read_all()
    assert [r.position for r in everything] == list(range(1, 11))
    page = await store.read_all(after=4, limit=3)
    assert [r.position for r in page] == [5, 6, 7]
    assert [r.event.task_id for r in page] == ["2", "2'", "3"]
    assert await store.read_all(after=10) == []


async def test_read_log_reads_only_the_asked_types_and_says_how_far_it_read(store: Any) -> None:
    for i in range(4):  # positions 1..8: queued, progressed, queued, progressed, ...
        progressed = ev.NewEvent(ev.TaskProgressed(task_id="p", at=now(), progress=1.0), meta())
        await store.append([StreamWrite(f"s{i}", 0, [queued(str(i)), progressed])])
    page = await store.read_log(0, {"TaskQueued"}, span=5)
    assert [r.position for r in page.events] == [1, 3, 5]
    assert (page.position, page.more) == (5, True)
    page = await store.read_log(page.position, {"TaskQueued"}, span=5)
    assert ([r.position for r in page.events], page.position, page.more) == ([7], 8, False)
    # Nothing of the asked type left: the read still moves to the head.
    page = await store.read_log(7, {"TaskSucceeded"}, span=5)
    assert (page.events, page.position, page.more) == ([], 8, False)
    assert (await store.read_log(8, {"TaskQueued"})).events == []


async def test_events_round_trip_with_their_metadata(store: Any) -> None:
    new = submitted("11111111-1111-1111-1111-111111111111")
    [recorded] = await store.append([StreamWrite("task-1", 0, [new])])
    [read] = await store.read_stream("task-1")
    assert read.event == new.event
    assert read.metadata.event_id == new.metadata.event_id
    assert read.metadata.correlation_id == "test"
    assert read.metadata.schema_version == ev.TaskSubmitted.schema_version
    assert (read.stream_id, read.version, read.position) == ("task-1", 1, recorded.position)


async def test_migrations_are_applied_once_and_reopening_keeps_data(
    store_spec: StoreSpec, store: Any
) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a")])])
    assert await store.applied_migrations() == [1, 2]
    again = await store_spec.open()  # applies migrations on start: nothing left to apply
    try:
        assert await again.applied_migrations() == [1, 2]
        assert len(await again.read_stream("s1")) == 1
    finally:
        await again.close()


async def test_concurrent_processes_lose_and_duplicate_nothing(store_spec: StoreSpec) -> None:
    workers, per_worker = 4, 60
    total = workers * per_worker
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers + 1, mp_context=ctx) as pool:
        reader = loop.run_in_executor(pool, store_workers.tail, store_spec, total, 120.0)
        writers = [
            loop.run_in_executor(pool, store_workers.append_many, store_spec, w, per_worker)
            for w in range(workers)
        ]
        await asyncio.gather(*writers)
        seen = await reader

    store = await store_spec.open()
    try:
        everything = await store.read_all(limit=10 * total)
        shared = await store.read_stream(store_workers.SHARED)
    finally:
        await store.close()
    assert [r.position for r in everything] == list(range(1, total + 1))  # gap-free
    ids = Counter(r.event.task_id for r in everything)
    assert ids == Counter({f"w{w}-{i}": 1 for w in range(workers) for i in range(per_worker)})
    assert [r.version for r in shared] == list(range(1, len(shared) + 1))
    # The reader followed the log while it grew and never skipped a position.
    assert seen == list(range(1, total + 1))


async def test_views_follow_the_log_exactly_once_across_restarts(
    store_spec: StoreSpec, store: Any
) -> None:
    tasks = [submitted(user="alice") for _ in range(3)]
    for new in tasks:
        await store.append([StreamWrite(f"task-{new.event.task_id}", 0, [new])])
    assert await store.catch_up() == 3
    assert await store.catch_up() == 0

    reopened = await store_spec.open()
    try:
        assert await reopened.catch_up() == 0  # the position survived the restart
        first = tasks[0].event.task_id
        await reopened.append([StreamWrite(f"task-{first}", 1, [queued(first)])])
        assert await reopened.catch_up() == 1
        view = await reopened.get(first)
        assert view is not None and view.status is TaskStatus.QUEUED
    finally:
        await reopened.close()


async def test_the_view_sets_what_later_events_change_and_skips_the_rest(store: Any) -> None:
    new = submitted(user="erin")
    tid = new.event.task_id
    await store.append([StreamWrite(f"task-{tid}", 0, [new, queued(tid)])])
    assert await store.catch_up() == 2
    subtask = ev.SubtaskCompleted(task_id=tid, key="0:0", agent_id="a", output=1, seconds=0.1)
    await store.append([
        StreamWrite(f"run-{tid}", 0, [ev.NewEvent(subtask, meta())]),
        StreamWrite("task-ghost", 0, [queued("ghost")]),  # a task the view does not hold
        StreamWrite(f"task-{tid}", 2, [
            ev.NewEvent(ev.TaskScheduled(task_id=tid, at=now(), placement={}), meta()),
            ev.NewEvent(ev.TaskStarted(task_id=tid, at=now()), meta()),
            ev.NewEvent(ev.TaskProgressed(task_id=tid, at=now(), progress=40.0), meta()),
        ]),
    ])  # fmt: skip
    await store.append([StreamWrite(f"task-{tid}", 5, [ev.NewEvent(
        ev.TaskSucceeded(task_id=tid, at=now(), result_ref=None, result={"sum": [1, 2.5]}),
        meta())])])  # fmt: skip
    assert await store.catch_up() == 5  # the task events only, not the subtask's
    assert await store.view_position() == 8
    assert await store.get("ghost") is None
    view = await store.get(tid)
    assert view is not None
    assert (view.status, view.progress, view.result) == (
        TaskStatus.SUCCEEDED, 100.0, {"sum": [1, 2.5]})  # fmt: skip
    assert (view.task_type, view.user_id) == ("demo", "erin")  # the rest as submitted


async def test_concurrent_catch_up_applies_each_event_once(
    store_spec: StoreSpec, store: Any
) -> None:
    for _ in range(40):
        new = submitted(user="bob")
        await store.append(
            [StreamWrite(f"task-{new.event.task_id}", 0, [new, queued(new.event.task_id)])]
        )
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=ctx) as pool:
        counts = await asyncio.gather(
            *[loop.run_in_executor(pool, store_workers.catch_up, store_spec) for _ in range(3)]
        )
    assert sum(counts) == 80
    assert await store.view_position() == 80
    page = await store.list(TaskQuery(tenant_id="t1", user_id="bob", limit=100))
    assert len(page.tasks) == 40
    assert {t.status for t in page.tasks} == {TaskStatus.QUEUED}


async def test_user_tasks_view_filters_and_pages_newest_first(store: Any) -> None:
    ids = []
    for i in range(7):
        new = submitted(user="carol")
        tid = new.event.task_id
        ids.append(tid)
        events = [new, queued(tid)] if i % 2 == 0 else [new]
        await store.append([StreamWrite(f"task-{tid}", 0, events)])
    await store.append(
        [StreamWrite(f"task-{submitted().event.task_id}", 0, [submitted(user="dan")])]
    )
    await store.catch_up()

    first = await store.list(TaskQuery(tenant_id="t1", user_id="carol", limit=3))
    assert [t.task_id for t in first.tasks] == ids[::-1][:3]
    second = await store.list(
        TaskQuery(tenant_id="t1", user_id="carol", limit=3, before_seq=first.next_cursor)
    )
    last = await store.list(
        TaskQuery(tenant_id="t1", user_id="carol", limit=3, before_seq=second.next_cursor)
    )
    assert [t.task_id for t in second.tasks + last.tasks] == ids[::-1][3:]
    assert last.next_cursor is None

    queued_only = await store.list(
        TaskQuery(tenant_id="t1", user_id="carol", status=TaskStatus.QUEUED, limit=50)
    )
    assert [t.task_id for t in queued_only.tasks] == ids[::2][::-1]
    other_tenant = await store.list(TaskQuery(tenant_id="t2", user_id="carol", limit=50))
    assert other_tenant.tasks == []
