"""Command handlers and queries on the in-memory store, with a fixed clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from prsm.adapters.skill_code import installed
from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from prsm.domain.identity import Principal
from prsm.domain.tasks import TaskStatus
from prsm.service_layer import queries
from prsm.service_layer.handlers import Submission
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.ports import StreamWrite
from tests.support import queued, register_agent
from tests.unit.fakes import FakeStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Principal("alice", "acme", frozenset({"user"}))
BOB = Principal("bob", "acme", frozenset({"user"}))
ADMIN = Principal("root", "acme", frozenset({"admin"}))
EVE = Principal("eve", "evil", frozenset({"admin"}))


@pytest.fixture
async def store() -> FakeStore:
    fake = FakeStore()
    await register_agent(fake)
    return fake


def task_log(store: FakeStore) -> list[ev.RecordedEvent]:
    return [r for r in store.log if r.stream_id.startswith("task-")]


def spec(**fields: Any) -> cmds.TaskSpec:
    """A valid ``map`` task; ``fields`` override."""
    return cmds.TaskSpec(
        **{"task_type": "map", "params": {"skill": "math.square", "items": [1]}, **fields}
    )


@pytest.fixture
def bus(store: FakeStore) -> MessageBus:
    return MessageBus(store, store, lambda: NOW, source="tests", skills=installed())


def submit(principal: Principal, *specs: cmds.TaskSpec) -> cmds.SubmitTasks:
    return cmds.SubmitTasks(
        correlation_id="corr-1",
        principal=principal,
        specs=specs or (spec(),),
    )


async def test_submitting_stores_events_with_metadata_and_updates_the_views(
    bus: MessageBus, store: FakeStore
) -> None:
    [submission] = await bus.handle(submit(ALICE))
    assert submission.created
    records = await store.read_stream(streams.task(submission.task.task_id))
    assert [type(r.event) for r in records] == [ev.TaskSubmitted, ev.TaskQueued]
    meta = records[0].metadata
    assert (meta.correlation_id, meta.source, meta.occurred_at) == ("corr-1", "tests", NOW)
    assert meta.causation_id is not None
    assert records[0].metadata.event_id != records[1].metadata.event_id
    view = await queries.get_task(store, ALICE, submission.task.task_id)
    assert view.status is TaskStatus.QUEUED  # the bus caught the views up


async def test_an_idempotency_key_yields_one_task(bus: MessageBus, store: FakeStore) -> None:
    keyed = spec(idempotency_key="k1")
    [first] = await bus.handle(submit(ALICE, keyed))
    [again] = await bus.handle(submit(ALICE, keyed))
    assert first.created and not again.created
    assert first.task.task_id == again.task.task_id
    assert len(task_log(store)) == 2
    [bobs] = await bus.handle(submit(BOB, keyed))  # keys are per user
    assert bobs.created and bobs.task.task_id != first.task.task_id


async def test_a_key_reused_for_another_request_conflicts(bus: MessageBus) -> None:
    await bus.handle(submit(ALICE, spec(idempotency_key="k1")))
    with pytest.raises(IdempotencyConflict):
        await bus.handle(submit(ALICE, spec(idempotency_key="k1", priority=2)))


async def test_a_batch_with_one_replayed_task_submits_the_others(bus: MessageBus) -> None:
    old = spec(idempotency_key="a")
    await bus.handle(submit(ALICE, old))
    result: list[Submission] = await bus.handle(submit(ALICE, old, spec(idempotency_key="b")))
    assert [s.created for s in result] == [False, True]


async def test_duplicate_keys_within_a_batch_are_refused(bus: MessageBus, store: FakeStore) -> None:
    same = spec(idempotency_key="same")
    with pytest.raises(InvalidRequest, match="unique"):
        await bus.handle(submit(ALICE, same, same))
    assert task_log(store) == []


async def test_cancel_is_for_the_owner_and_the_tenant_admin(bus: MessageBus) -> None:
    [a] = await bus.handle(submit(ALICE))
    [b] = await bus.handle(submit(ALICE))
    for outsider in (BOB, EVE):
        with pytest.raises(NotFound):
            await bus.handle(
                cmds.CancelTask(correlation_id="c", principal=outsider, task_id=a.task.task_id)
            )
    cancelled = await bus.handle(
        cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=a.task.task_id)
    )
    assert cancelled.status is TaskStatus.CANCELLED
    by_admin = await bus.handle(
        cmds.CancelTask(correlation_id="c", principal=ADMIN, task_id=b.task.task_id)
    )
    assert by_admin.status is TaskStatus.CANCELLED
    with pytest.raises(IllegalTransition):
        await bus.handle(
            cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=a.task.task_id)
        )


async def test_cancel_decides_again_when_the_task_moved_on(store: FakeStore) -> None:
    class RacingStore(FakeStore):
        """Another component schedules the task just before our first cancel lands."""

        raced = False

        async def append(self, writes: Sequence[StreamWrite]) -> list[ev.RecordedEvent]:
            if not self.raced and any(
                type(n.event) is ev.TaskCancelled for w in writes for n in w.events
            ):
                self.raced = True
                stream = writes[0].stream_id
                scheduled = ev.TaskScheduled(
                    task_id=stream.removeprefix("task-"), at=NOW, placement={}
                )
                meta = ev.EventMetadata(occurred_at=NOW, source="scheduler", correlation_id="x")
                await super().append([StreamWrite(stream, 2, [ev.NewEvent(scheduled, meta)])])
            return await super().append(writes)

    racing = RacingStore()
    await register_agent(racing)
    bus = MessageBus(racing, racing, lambda: NOW, source="tests", skills=installed())
    [s] = await bus.handle(submit(ALICE))
    task = await bus.handle(
        cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=s.task.task_id)
    )
    assert racing.raced
    assert task.status is TaskStatus.CANCELLED
    kinds = [type(r.event) for r in await racing.read_stream(streams.task(s.task.task_id))]
    assert kinds == [ev.TaskSubmitted, ev.TaskQueued, ev.TaskScheduled, ev.TaskCancelled]


async def test_unknown_and_malformed_ids_are_not_found(bus: MessageBus, store: FakeStore) -> None:
    for task_id in ("nope", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(NotFound):
            await queries.get_task(store, ALICE, task_id)
        with pytest.raises(NotFound):
            await bus.handle(cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=task_id))


async def test_listing_shows_only_your_tasks_by_status(bus: MessageBus, store: FakeStore) -> None:
    [a] = await bus.handle(submit(ALICE))
    await bus.handle(submit(ALICE))
    await bus.handle(submit(BOB))
    await bus.handle(cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=a.task.task_id))
    mine = await queries.list_tasks(store, ALICE)
    assert len(mine.tasks) == 2
    cancelled = await queries.list_tasks(store, ALICE, status=TaskStatus.CANCELLED)
    assert [t.task_id for t in cancelled.tasks] == [a.task.task_id]
    with pytest.raises(InvalidRequest):
        await queries.list_tasks(store, ALICE, limit=0)
    with pytest.raises(InvalidRequest, match="cursor"):  # beyond a 64-bit log position
        await queries.list_tasks(store, ALICE, cursor=2**63)


async def test_concurrency_errors_name_the_stream(store: FakeStore) -> None:
    with pytest.raises(ConcurrencyError) as raised:
        await store.append([StreamWrite("s", 3, [queued()])])
    assert raised.value.stream_id == "s"


async def test_a_task_that_calls_a_model_needs_the_inference_scope(store: FakeStore) -> None:
    await register_agent(store, ("llm",))
    bus = MessageBus(store, store, lambda: NOW, source="tests", skills=installed())
    prompt = spec(task_type="prompt", params={"model": "m", "prompts": ["hi"]})
    narrow = Principal("alice", "acme", frozenset({"user"}), scopes=frozenset({"tasks:write"}))
    with pytest.raises(PermissionDenied, match="inference scope"):
        await bus.handle(submit(narrow, prompt))
    assert task_log(store) == []
    [ok] = await bus.handle(submit(ALICE, prompt))  # the user role has it
    assert ok.created
