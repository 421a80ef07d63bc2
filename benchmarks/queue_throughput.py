"""Durable queue throughput: N trivial tasks (`map` of `math.square` over one item, nothing
to reserve) submitted in batches of 1,000 through the service layer, then queued, admitted by
the scheduler, run by the orchestrator on agent actors and finished — every task's events
stored in SQLite (submitted, queued, scheduled, started, its subtask, succeeded). The
service layer is built as a gateway replica builds it (``bootstrap.build_gateway``). Timed from
the first submit to the last success. Baseline in the same run, on the same local Ray:
``ray.get([f.remote() for _ in range(N)])`` of a trivial remote function. Targets: ≥ 50,000
tasks/min and ≥ 1.0 × the baseline's rate.

    .venv/bin/python -m benchmarks.queue_throughput [--tasks 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import ray

from benchmarks.common import write
from prsm import bootstrap
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain.identity import Principal
from prsm.domain.tasks import ResourceRequest
from prsm.runtime import orchestrator, scheduler

BATCH = 1000
USER = Principal(user_id="bench", tenant_id="bench", roles=frozenset({"user"}))


@ray.remote
def trivial(i: int) -> int:
    return i * i


def baseline(n: int) -> float:
    started = time.perf_counter()
    ray.get([trivial.remote(i) for i in range(n)])
    return time.perf_counter() - started


def succeeded(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE event_type = 'TaskSucceeded'")
        return int(row.fetchone()[0])


async def platform(settings: Settings, n: int) -> dict[str, float]:
    gateway = await bootstrap.build_gateway(settings.for_replicas(), in_ray=False)
    bus = gateway.bus  # the service layer as a gateway replica builds it
    trivial_task = {"skill": "math.square"}
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        specs = tuple(cmds.TaskSpec(task_type="map", params={**trivial_task, "items": [i]},
                                    resources=ResourceRequest(cpu=0))
                      for i in range(first, min(n, first + BATCH)))  # fmt: skip
        await bus.handle(cmds.SubmitTasks(correlation_id="bench", principal=USER, specs=specs))
    submitted = time.perf_counter() - started
    while (done := await asyncio.to_thread(succeeded, settings.sqlite_path)) < n:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # the store is polled: another process writes it
    took = time.perf_counter() - started
    events = await asyncio.to_thread(_count_events, settings.sqlite_path)
    await gateway.store.close()
    return {"seconds": took, "submit_seconds": submitted, "succeeded": done,
            "events_per_task": events / n}  # fmt: skip


def _count_events(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM events WHERE stream_id != 'agents'")
                   .fetchone()[0])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    n = args.tasks
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp),
                agents={"compute": 2},
                default_model="",
                tenant_max_running=1_000_000,
            )  # one tenant submits them all
            handle = bootstrap.start_orchestrator(settings)
            while len(ray.get(handle.agents.remote())) < 2:
                time.sleep(0.2)
            baseline(2000)  # warm up the workers
            raw_s = baseline(n)
            prsm = asyncio.run(platform(settings, n))
            scheduler.stop()
            orchestrator.stop()
    finally:
        ray.shutdown()
    raw_rate = n / raw_s * 60
    prsm_rate = n / prsm["seconds"] * 60
    result: dict[str, Any] = {
        "target": ">= 50,000 tasks/min and >= 1.0 x raw ray.get of the same count",
        "tasks": n,
        "prsm_tasks_per_min": prsm_rate,
        "raw_ray_tasks_per_min": raw_rate,
        "ratio": prsm_rate / raw_rate,
        "met": prsm_rate >= 50_000 and prsm_rate >= raw_rate,
        "prsm": prsm,
        "raw_seconds": raw_s,
    }
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.bar(["raw ray.get", "PRSM durable queue"], [raw_rate, prsm_rate], color=["grey", "C0"])
    ax.axhline(50_000, color="red", linewidth=0.8, label="target 50,000/min")
    ax.set_ylabel("trivial tasks per minute")
    ax.set_title(f"{n} tasks: PRSM {prsm_rate:,.0f}/min, raw {raw_rate:,.0f}/min")
    ax.legend()
    write("queue_throughput", result, figure)


if __name__ == "__main__":
    main()
