"""Model-registry load time against the length of its stream, with snapshots (what every
gateway replica does each second, and every deploy, rollout decision and status change before
it decides) and, as the baseline in the same run, by reading the whole stream as before.

The stream is written through the registry's own write path (``change_registry``, which
saves a snapshot whenever an append crosses a multiple of ``SNAPSHOT_EVERY``) on the embedded
SQLite store: two models and a rollout the controller holds for want of requests, one
decision per interval, the case that grows a stream without bound. Each length is measured
as a multiple of ``SNAPSHOT_EVERY`` (no tail) and with the longest tail, ``SNAPSHOT_EVERY - 1``
events after the snapshot. Target: 100,000 events load in <= 1.2 x the time of 100 (``ratio``),
and 100,099 in <= 1.2 x the time of 199 (``ratio_longest_tail``: the same 99-event tail).

    .venv/bin/python -m benchmarks.registry_load [--repeats 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.common import write
from prsm.adapters.store.sqlite import SqliteStore
from prsm.domain import streams
from prsm.domain.identity import Principal
from prsm.domain.model_registry import ModelRegistry, deployment_key
from prsm.domain.models import ModelSpec
from prsm.domain.registry_state import SNAPSHOT_EVERY
from prsm.domain.rollout_policy import RolloutPolicy, VersionStats
from prsm.service_layer.models import change_registry, load_registry
from prsm.service_layer.unit_of_work import Writer

LENGTHS = (100, 1_000, 10_000, 100_000)
ANN = Principal("ann", "lab")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
HELD = VersionStats(3, 0, 10.0)  # too few requests to judge: the rollout is held
BULK = 1_000  # decisions per append while filling (one per append for the last ones)


class Filler:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.writer = Writer(store, lambda: T0, "benchmark", correlation_id=str(uuid.uuid4()))
        self.length = 0
        self.at = T0

    async def start(self) -> None:
        def models(r: ModelRegistry) -> None:
            for name in ("tiny", "other"):
                r.deploy(ANN, ModelSpec(name=name, version="v1", source=f"/m/{name}"), T0, False)
                r.deployed(deployment_key("lab", name, "v1"), T0)
            policy = RolloutPolicy(evaluation_interval_s=60, min_samples=20)
            r.start_rollout(ANN, "r1", "tiny", "v2", policy, T0)
            r.deployed(deployment_key("lab", "tiny", "v2"), T0)

        self.length += len((await change_registry(self.writer, models)).changes)

    async def grow_to(self, length: int) -> None:
        """Append held decisions until the stream holds ``length`` events; the last
        ``SNAPSHOT_EVERY`` one per append, as the controller appends them."""
        while self.length < length:
            left = length - self.length
            count = min(BULK, left - SNAPSHOT_EVERY) if left > SNAPSHOT_EVERY else 1
            await change_registry(self.writer, self._holds(count))
            self.length += count

    def _holds(self, count: int) -> Any:
        def decide(r: ModelRegistry) -> None:
            for _ in range(count):
                self.at += timedelta(seconds=60)
                r.evaluate_rollout("r1", self.at, HELD, HELD)

        return decide


async def whole_stream(store: SqliteStore) -> ModelRegistry:
    """How the registry was loaded before snapshots: every event of its stream."""
    records = await store.read_stream(streams.MODEL_REGISTRY)
    return ModelRegistry.from_events((r.event for r in records), records[-1].version)


async def timed(load: Any, store: SqliteStore, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await load(store)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def run(repeats: int) -> dict[str, Any]:
    store = await SqliteStore.open(Path(tempfile.mkdtemp(prefix="prsm-bench-registry-")) / "db")
    rows: list[dict[str, Any]] = []
    try:
        filler = Filler(store)
        await filler.start()
        for length in LENGTHS:
            for tail in (0, SNAPSHOT_EVERY - 1):
                await filler.grow_to(length + tail)
                snapshot = await store.load_snapshot(streams.MODEL_REGISTRY)
                registry = await load_registry(store)
                assert registry.version == filler.length
                base_repeats = max(1, repeats // (1 + length // 10_000))
                rows.append({
                    "events": filler.length,
                    "tail": filler.length - (snapshot.version if snapshot else 0),
                    "snapshot_ms": await timed(load_registry, store, repeats),
                    "whole_stream_ms": await timed(whole_stream, store, base_repeats),
                })  # fmt: skip
                print(rows[-1], flush=True)
    finally:
        await store.close()
    return {"snapshot_every": SNAPSHOT_EVERY, "repeats": repeats, "loads": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    result = asyncio.run(run(args.repeats))
    by_events = {r["events"]: r for r in result["loads"]}
    small, large = by_events[LENGTHS[0]], by_events[LENGTHS[-1]]
    longest_tail = by_events[LENGTHS[-1] + SNAPSHOT_EVERY - 1]
    result["ratio"] = large["snapshot_ms"] / small["snapshot_ms"]
    # the longest tail against the same tail at 100 events (199: the snapshot at 100 and 99)
    small_tail = by_events[LENGTHS[0] + SNAPSHOT_EVERY - 1]
    result["ratio_longest_tail"] = longest_tail["snapshot_ms"] / small_tail["snapshot_ms"]
    result["whole_stream_ratio"] = large["whole_stream_ms"] / small["whole_stream_ms"]
    result["target_met"] = result["ratio"] <= 1.2 and result["ratio_longest_tail"] <= 1.2
    write("registry_load", result, plot(result))


def plot(result: dict[str, Any]) -> Any:
    figure, axis = plt.subplots(figsize=(7, 4))
    for tail, marker in ((False, "o"), (True, "s")):
        loads = [r for r in result["loads"] if (r["tail"] > 0) == tail]
        label = f"snapshot + {'longest ' if tail else 'no '}tail"
        axis.plot([r["events"] for r in loads], [r["snapshot_ms"] for r in loads], marker=marker,
                  label=label)  # fmt: skip
    loads = [r for r in result["loads"] if r["tail"] == 0]
    axis.plot([r["events"] for r in loads], [r["whole_stream_ms"] for r in loads], marker="x",
              label="whole stream (before)")  # fmt: skip
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("events in the model-registry stream")
    axis.set_ylabel("load time, median (ms)")
    axis.set_title(f"Model-registry load (ratio 100k/100: {result['ratio']:.2f})")
    axis.legend()
    return figure


if __name__ == "__main__":
    main()
