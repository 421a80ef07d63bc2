"""Status query latency with 1,000,000 tasks stored, SQLite and PostgreSQL.

Tasks are stored through the real write path (batched appends of TaskSubmitted + TaskQueued,
then the task view's catch-up); the measured call is the read side's `queries.get_task`, as the
gateway makes it. Targets: p99 <= 2 ms (SQLite), <= 5 ms (PostgreSQL).

    .venv/bin/python benchmarks/status_query.py [--tasks 1000000] [--queries 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import matplotlib.pyplot as plt

from benchmarks.common import percentiles, write
from prsm.adapters.store.postgres import PostgresStore
from prsm.adapters.store.sqlite import SqliteStore
from prsm.bootstrap import utc_now
from prsm.domain import commands as cmds
from prsm.domain.identity import Principal
from prsm.service_layer import handlers, queries
from prsm.service_layer.unit_of_work import Context

DSN = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 1000
USERS = [Principal(f"user{u}", f"tenant{u % 10}", frozenset({"user"})) for u in range(1000)]


async def fill(store: Any, tasks: int) -> tuple[list[tuple[Principal, str]], float]:
    """Submit through the service layer's handler in batches, then let the view catch up."""
    context = Context(store=store, clock=utc_now, source="benchmark")
    started, ids = time.perf_counter(), []
    for b in range(tasks // BATCH):
        principal = USERS[b % len(USERS)]
        specs = tuple(cmds.TaskSpec(task_type="demo", params={"i": i}) for i in range(BATCH))
        command = cmds.SubmitTasks(correlation_id=f"fill-{b}", principal=principal, specs=specs)
        submissions = await handlers.submit_tasks(command, context)
        ids += [(principal, s.task.task_id) for s in submissions]
        if b % 100 == 0:
            print(f"  {len(ids):>9,} tasks stored", flush=True)
    await store.catch_up(batch=20_000)
    return ids, time.perf_counter() - started


async def measure(store: Any, ids: list[tuple[Principal, str]], n: int) -> list[float]:
    rng = random.Random(7)
    sample = [rng.choice(ids) for _ in range(n)]
    for principal, task_id in sample[:500]:  # warm up
        await queries.get_task(store, principal, task_id)
    latencies = []
    for principal, task_id in sample:
        t0 = time.perf_counter()
        await queries.get_task(store, principal, task_id)
        latencies.append(time.perf_counter() - t0)
    return latencies


@contextlib.asynccontextmanager
async def sqlite_store() -> AsyncIterator[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "bench.db")
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def postgres_store() -> AsyncIterator[Any]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = await PostgresStore.open(DSN, schema=schema)
    try:
        yield store
    finally:
        await store.close()
        conn = await asyncpg.connect(DSN)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


STORES = {"sqlite": (sqlite_store, 2.0), "postgres": (postgres_store, 5.0)}


async def run(tasks: int, n: int) -> None:
    results: dict[str, Any] = {}
    samples: dict[str, list[float]] = {}
    for name, (open_store, target_p99_ms) in STORES.items():
        async with open_store() as store:
            print(f"{name}: storing tasks …", flush=True)
            ids, fill_s = await fill(store, tasks)
            samples[name] = await measure(store, ids, n)
        results[name] = {
            **percentiles(samples[name]),
            "fill_s": fill_s,
            "target_p99_ms": target_p99_ms,
        }

    figure, ax = plt.subplots(figsize=(7, 4))
    for name, values in samples.items():
        ordered = sorted(v * 1000 for v in values)
        ax.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=name)
    for name, (_, target) in STORES.items():
        ax.axvline(target, linestyle="--", linewidth=0.8, label=f"{name} p99 target")
    ax.set_xscale("log")
    ax.set_xlabel("status query latency (ms)")
    ax.set_ylabel("fraction of queries")
    ax.set_title(f"queries.get_task with {tasks:,} tasks stored")
    ax.legend()
    write("status_query", {"tasks": tasks, "queries": n, "results": results}, figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.queries))


if __name__ == "__main__":
    main()
