"""Snapshots of the model registry: written every ``SNAPSHOT_EVERY`` events by the writer
that crosses the mark, and a load from the snapshot and the events after it gives the same
registry as reading the whole stream; a held rollout's history keeps its latest holds."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prsm.adapters.store.snapshot_codec import decode_state, encode_state
from prsm.domain import rollouts, streams
from prsm.domain.model_registry import ModelRegistry
from prsm.domain.registry_state import SNAPSHOT_EVERY, state_of
from prsm.domain.rollout_policy import VersionStats
from prsm.service_layer.models import change_registry, load_registry
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.unit_of_work import Writer
from tests.support import busy_registry, now
from tests.unit.fakes import FakeStore

GOOD, FEW = VersionStats(100, 0, 10.0), VersionStats(3, 0, 10.0)


async def whole(store: FakeStore) -> ModelRegistry:
    records = await store.read_stream(streams.MODEL_REGISTRY)
    return ModelRegistry.from_events((r.event for r in records), records[-1].version)


async def test_loads_from_the_snapshot_and_the_tail_equal_the_whole_stream() -> None:
    store = FakeStore()
    writer = Writer(store, now, "tests", correlation_id=str(uuid.uuid4()))
    start = busy_registry()
    await store.append([StreamWrite(streams.MODEL_REGISTRY, 0, writer.events(start.changes))])
    first = len(start.changes)
    held_at = start.rollouts["r1"].last_evaluated_at
    for i in range(1, 2 * SNAPSHOT_EVERY + 31):
        when = held_at + timedelta(seconds=10 * i)
        await change_registry(writer, lambda r, t=when: r.evaluate_rollout("r1", t, GOOD, FEW))

    length = first + 2 * SNAPSHOT_EVERY + 30
    snapshot = store.snapshots[streams.MODEL_REGISTRY]
    assert snapshot.version == length // SNAPSHOT_EVERY * SNAPSHOT_EVERY
    loaded, full = await load_registry(store), await whole(store)
    assert loaded.version == full.version == length
    assert state_of(loaded, length) == state_of(full, length)
    r1 = loaded.rollouts["r1"]
    assert r1.empty_intervals == 3 + 2 * SNAPSHOT_EVERY + 30  # every hold counted
    assert len(r1.history) == 1 + rollouts.HELD_KEPT  # the advance, then the latest holds
    assert r1.history[-1].at == held_at + timedelta(seconds=10 * (2 * SNAPSHOT_EVERY + 30))


async def test_a_registry_without_a_snapshot_loads_from_its_stream() -> None:
    store = FakeStore()
    writer = Writer(store, now, "tests", correlation_id=str(uuid.uuid4()))
    start = busy_registry()
    await store.append([StreamWrite(streams.MODEL_REGISTRY, 0, writer.events(start.changes))])
    assert streams.MODEL_REGISTRY not in store.snapshots
    loaded = await load_registry(store)
    assert state_of(loaded, loaded.version) == state_of(await whole(store), loaded.version)


def test_a_snapshot_this_code_cannot_read_is_passed_over() -> None:
    state = state_of(busy_registry(), 10)
    text = encode_state(state)
    assert decode_state(10, text) == state
    assert decode_state(10, text.replace('"schema": 1', '"schema": 0')) is None
    assert decode_state(10, text[:-20]) is None
    assert decode_state(10, "[]") is None
