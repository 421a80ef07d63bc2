"""One contract, three event stores: every test runs against SQLite, PostgreSQL and the
in-memory fake the unit tests use (``tests/unit/fakes.py``), except the few that are about a
real database, which say why."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.errors import ConcurrencyError
from prsm.domain.event_types import EVENT_TYPES
from prsm.domain.identity import Principal
from prsm.domain.model_registry import ModelRegistry
from prsm.domain.registry_state import restored, state_of
from prsm.domain.tasks import TaskStatus
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.views import TaskQuery
from tests.conftest import drop_schema, require_postgres
from tests.integration import store_workers
from tests.support import StoreSpec, busy_registry, meta, now, queued, submitted
from tests.unit.fakes import FakeStore

REAL_STORES = ["sqlite", "postgres"]
ANN = Principal("ann", "lab")


@dataclass(frozen=True)
class FakeSpec:
    """The fake store, in memory: opening it again opens the same memory, as opening a
    SQLite file or a PostgreSQL schema again opens the same data."""

    kind: str = "fake"
    store: FakeStore = field(default_factory=FakeStore)

    async def open(self) -> FakeStore:
        return self.store


@pytest.fixture(params=["fake", *REAL_STORES])
async def store_spec(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreSpec | FakeSpec]:
    """Overrides the shared fixture (tests/conftest.py) for this contract, adding the fake;
    ``store`` opens whichever this gives."""
    if request.param == "fake":
        yield FakeSpec()
    elif request.param == "sqlite":
        yield StoreSpec("sqlite", str(tmp_path / "prsm.db"))
    else:
        await require_postgres()
        schema = f"prsm_test_{uuid.uuid4().hex[:12]}"
        yield StoreSpec("postgres", schema)
        await drop_schema(schema)


def real_stores_only(reason: str) -> pytest.MarkDecorator:
    """Run a test on SQLite and PostgreSQL only, not on the fake; ``reason`` says why, for
    the reader (the fake lives in one process's memory and has no schema)."""
    del reason
    return pytest.mark.parametrize("store_spec", REAL_STORES, indirect=True)


async def whole_log(store: Any) -> list[ev.LoggedEvent]:
    """Every event in the log, in position order, read as a follower reads it."""
    events: list[ev.LoggedEvent] = []
    position, more = 0, True
    while more:
        page = await store.read_log(position, EVENT_TYPES.keys(), span=7)
        events += page.events
        position, more = page.position, page.more
    return events


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
    assert [r.position for r in await whole_log(store)] == [1]


async def test_new_stream_must_not_exist(store: Any) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a")])])
    with pytest.raises(ConcurrencyError):
        await store.append([StreamWrite("s1", 0, [queued("again")])])


async def test_any_version_appends_without_check(store: Any) -> None:
    await store.append([StreamWrite("s1", None, [queued("a")])])
    recorded = await store.append([StreamWrite("s1", None, [queued("b")])])
    assert recorded[0].version == 2


async def test_each_stream_once_per_append_and_an_empty_append_writes_nothing(
    store: Any,
) -> None:
    with pytest.raises(ValueError, match="once per append"):
        await store.append([StreamWrite("s1", 0, [queued("a")]), StreamWrite("s1", 1, [])])
    assert await store.append([StreamWrite("s1", 0, []), StreamWrite("s2", None, [])]) == []
    assert await whole_log(store) == []
    assert await store.read_stream("s1") == []


async def test_concurrent_appends_each_succeed_or_fail_on_their_own(store: Any) -> None:
    """Appends made at once (SQLite writes them in one transaction, ``GroupCommit``): each is
    all or nothing, a stale one fails alone, and the log stays gap-free."""
    await store.append([StreamWrite("taken", 0, [queued("first")])])

    async def one(i: int) -> list[Any] | ConcurrencyError:
        stale = i % 10 == 3
        writes = [StreamWrite(f"c{i}", 0, [queued(f"c{i}"), queued(f"d{i}")]),
                  StreamWrite("taken", 0, [queued(f"x{i}")]) if stale
                  else StreamWrite("shared", None, [queued(f"s{i}")])]  # fmt: skip
        try:
            return list(await store.append(writes))
        except ConcurrencyError as exc:
            return exc

    results = await asyncio.gather(*(one(i) for i in range(40)))
    for i, result in enumerate(results):
        if i % 10 == 3:
            assert isinstance(result, ConcurrencyError) and result.stream_id == "taken"
            assert await store.read_stream(f"c{i}") == []
        else:
            assert isinstance(result, list)
            assert [r.event.task_id for r in result] == [f"c{i}", f"d{i}", f"s{i}"]
    log = await whole_log(store)
    assert [r.position for r in log] == list(range(1, 1 + 36 * 3 + 1))
    assert [r.version for r in await store.read_stream("shared")] == list(range(1, 37))


async def test_read_log_from_a_position_across_streams_in_position_order(store: Any) -> None:
    for i in range(5):
        await store.append([StreamWrite(f"s{i}", 0, [queued(str(i)), queued(f"{i}'")])])
    everything = await whole_log(store)
    assert [r.position for r in everything] == list(range(1, 11))
    assert [(r.stream_id, r.version) for r in everything[2:4]] == [("s1", 1), ("s1", 2)]
    page = await store.read_log(4, {"TaskQueued"}, span=3)
    assert [r.position for r in page.events] == [5, 6, 7]
    assert [r.event.task_id for r in page.events] == ["2", "2'", "3"]
    assert (page.position, page.more) == (7, True)
    page = await store.read_log(10, {"TaskQueued"})
    assert (page.events, page.position, page.more) == ([], 10, False)
    # What a follower reads is what the stream holds, less the metadata.
    [first, second] = await store.read_stream("s3")
    assert everything[6:8] == [
        ev.LoggedEvent(r.stream_id, r.version, r.position, r.event) for r in (first, second)
    ]


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


@real_stores_only("migrations are a database's schema: the fake has none")
async def test_migrations_are_applied_once_and_reopening_keeps_data(
    store_spec: StoreSpec, store: Any
) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a")])])
    assert await store.applied_migrations() == [1, 2, 3]
    again = await store_spec.open()  # applies migrations on start: nothing left to apply
    try:
        assert await again.applied_migrations() == [1, 2, 3]
        assert len(await again.read_stream("s1")) == 1
    finally:
        await again.close()


@real_stores_only("several OS processes write one store: the fake lives in one process")
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
        everything = await whole_log(store)
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


async def test_catch_ups_in_small_batches_apply_each_event_once(store: Any) -> None:
    for _ in range(10):
        new = submitted(user="bob")
        await store.append(
            [StreamWrite(f"task-{new.event.task_id}", 0, [new, queued(new.event.task_id)])]
        )
    subtask = ev.SubtaskCompleted(task_id="x", key="0:0", agent_id="a", output=1, seconds=0.1)
    await store.append([StreamWrite("run-x", 0, [ev.NewEvent(subtask, meta())])])
    counts = await asyncio.gather(*[store.catch_up(batch=3) for _ in range(3)])
    assert (sum(counts), await store.view_position()) == (20, 21)  # the subtask's passed over
    assert await store.catch_up(batch=3) == 0
    page = await store.list(TaskQuery(tenant_id="t1", user_id="bob", limit=100))
    assert {t.status for t in page.tasks} == {TaskStatus.QUEUED} and len(page.tasks) == 10


@real_stores_only("catch-ups in several OS processes share one store: the fake lives in one")
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


async def test_read_stream_after_a_version_gives_only_the_later_events(store: Any) -> None:
    await store.append([StreamWrite("s1", 0, [queued("a"), queued("b"), queued("c")])])
    assert [r.event.task_id for r in await store.read_stream("s1", after=1)] == ["b", "c"]
    assert await store.read_stream("s1", after=3) == []


async def test_a_snapshot_round_trips_and_only_a_later_one_replaces_it(
    store_spec: StoreSpec | FakeSpec, store: Any
) -> None:
    assert await store.load_snapshot(streams.MODEL_REGISTRY) is None
    registry = busy_registry()
    state = state_of(registry, 200)
    await store.save_snapshot(streams.MODEL_REGISTRY, state)
    assert await store.load_snapshot(streams.MODEL_REGISTRY) == state
    assert restored(state).route(ANN, "tiny") == registry.route(ANN, "tiny")

    await store.save_snapshot(streams.MODEL_REGISTRY, state_of(ModelRegistry(), 100))
    assert await store.load_snapshot(streams.MODEL_REGISTRY) == state  # an older one: kept
    newer = state_of(busy_registry(holds=4), 300)
    await store.save_snapshot(streams.MODEL_REGISTRY, newer)
    again = await store_spec.open()
    try:
        assert await again.load_snapshot(streams.MODEL_REGISTRY) == newer
    finally:
        if again is not store:
            await again.close()
