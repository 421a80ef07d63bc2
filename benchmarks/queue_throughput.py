"""Durable queue throughput as a user gets it: trivial tasks (`map` of `math.square` over one
item, default resources — the pooled lane, nothing reserved) submitted over HTTP to the
gateway on Ray Serve, then queued, admitted by the scheduler, run on agents by the
orchestrator and finished, every task's events stored in SQLite. Timed from the first submit
to the last SUCCEEDED. Phases, all on one local Ray in the same run:

- ``http``: batch submissions of 100 tasks (4 clients), counted per task;
- ``http_single``: one task per request, from 8 clients;
- ``in_process``: batches of 1,000 through the service layer of a gateway replica built in
  this process (no HTTP), labelled as such;
- baselines: ``raw_unbatched`` — ``ray.get([f.remote(i) for i in range(n)])`` — and
  ``raw_batched`` — the same work in Ray tasks of 256 items, as PRSM batches subtasks into
  agent calls (the upper bound);
- submit latency: p50 of one single submit at 1 and 16 clients, against a bare Serve FastAPI
  no-op on the same Serve (the target's baseline, a GET). For information, also against the
  no-op POSTed the same body (``noop_post``): Serve's proxy hands a request body to the
  replica in an actor call of its own, which a submit pays and the GET does not.

One tenant submits every task, so its limits are raised for the run: the rate limit for task
submissions (by default 100/s per user) and the tenant's quota (by default 50 tasks and 256
CPUs scheduled or running at once; each task asks for the default 1 CPU). This measures the
queue, not the limiter or the quota. A phase
that does not finish in ``--phase-timeout`` seconds reports what finished.
Targets: ``http.tasks_per_min`` >= 50,000 and >= 1.0 x ``raw_unbatched.tasks_per_min``;
single-submit p50 <= 3 x the no-op's at 1 and 16 clients.

    .venv/bin/python -m benchmarks.queue_throughput [--tasks 10000] [--single 2000]
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

import httpx
import matplotlib.pyplot as plt
import ray
from ray import serve

from benchmarks.common import free_port, percentiles, write
from benchmarks.gateway_latency import bare_app
from prsm import bootstrap
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain.identity import Principal
from prsm.runtime import orchestrator, scheduler
from prsm.runtime.orchestrator import MAX_BATCH
from prsm.serve.deployment import gateway_app

HTTP_BATCH = 100
SERVICE_BATCH = 1000
USER = Principal(user_id="bench", tenant_id="bench", roles=frozenset({"user"}))


def task(i: int) -> dict[str, Any]:
    return {"type": "map", "params": {"skill": "math.square", "items": [i]}}


@ray.remote
def trivial(i: int) -> int:
    return i * i


@ray.remote
def trivial_batch(items: list[int]) -> list[int]:
    return [i * i for i in items]


def raw(n: int, batched: bool) -> float:
    started = time.perf_counter()
    if batched:
        chunks = [list(range(a, min(n, a + MAX_BATCH))) for a in range(0, n, MAX_BATCH)]
        ray.get([trivial_batch.remote(c) for c in chunks])
    else:
        ray.get([trivial.remote(i) for i in range(n)])
    return time.perf_counter() - started


def succeeded(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE event_type = 'TaskSucceeded'")
        return int(row.fetchone()[0])


async def until_succeeded(db: Path, target: int, started: float, timeout_s: float) -> int:
    while (done := await asyncio.to_thread(succeeded, db)) < target:
        if time.perf_counter() - started > timeout_s:
            break
        await asyncio.sleep(0.2)  # the store is polled: other processes write it
    return done


def rate(n: int, seconds: float) -> dict[str, float]:
    return {"tasks": n, "seconds": seconds, "tasks_per_min": n / seconds * 60}


async def http_phase(url: str, token: str, db: Path, n: int, batch: int, clients: int,
                     timeout_s: float) -> dict[str, Any]:  # fmt: skip
    before = await asyncio.to_thread(succeeded, db)
    bodies = [{"tasks": [task(i) for i in range(a, min(n, a + batch))]} if batch > 1 else task(a)
              for a in range(0, n, batch)]  # fmt: skip
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
        started = time.perf_counter()

        async def client(mine: list[dict[str, Any]]) -> None:
            for body in mine:
                response = await http.post("/v1/tasks", json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(client(bodies[c::clients]) for c in range(clients)))
        submit_s = time.perf_counter() - started
        done = await until_succeeded(db, before + n, started, timeout_s) - before
    took = time.perf_counter() - started
    return {**rate(done, took), "submitted": n, "submit_seconds": submit_s,
            "statuses": statuses, "finished": done == n}  # fmt: skip


async def in_process_phase(settings: Settings, n: int, timeout_s: float) -> dict[str, Any]:
    gateway = await bootstrap.build_gateway(settings.for_replicas(), in_ray=False)
    before = await asyncio.to_thread(succeeded, settings.sqlite_path)
    started = time.perf_counter()
    for a in range(0, n, SERVICE_BATCH):
        specs = tuple(cmds.TaskSpec(task_type="map", params=task(i)["params"])
                      for i in range(a, min(n, a + SERVICE_BATCH)))  # fmt: skip
        await gateway.bus.handle(cmds.SubmitTasks(correlation_id="b", principal=USER, specs=specs))
    submit_s = time.perf_counter() - started
    target = before + n
    done = await until_succeeded(settings.sqlite_path, target, started, timeout_s) - before
    took = time.perf_counter() - started
    await gateway.store.close()
    return {**rate(done, took), "submit_seconds": submit_s, "finished": done == n}


async def submit_latency(url: str, token: str, method: str, path: str, clients: int,
                         total: int) -> list[float]:  # fmt: skip
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip

        async def client() -> None:
            while len(latencies) < total:
                started = time.perf_counter()
                if method == "GET":
                    response = await http.get(path)
                else:
                    response = await http.post(path, json=task(len(latencies)))
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def latencies(url: str, token: str, per: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for clients in (1, 16):
        submit: list[float] = []
        noop: list[float] = []
        posted: list[float] = []
        for _ in range(3):  # rounds alternate, so drift hits all alike
            submit += await submit_latency(url, token, "POST", "/v1/tasks", clients, per)
            noop += await submit_latency(url, token, "GET", "/bare/noop", clients, per)
            posted += await submit_latency(url, token, "POST", "/bare/noop", clients, per)
        s, b, p = percentiles(submit), percentiles(noop), percentiles(posted)
        out[str(clients)] = {
            "submit": s, "noop": b, "p50_ratio": s["p50_ms"] / b["p50_ms"],
            "noop_post": p, "p50_ratio_to_post": s["p50_ms"] / p["p50_ms"],
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    args = parser.parse_args()
    n, single, limit = args.tasks, args.single, args.phase_timeout
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            settings = Settings(
                data_dir=Path(tmp),
                agents={"compute": 2},
                default_model="",
                http_port=port,
                tenant_max_running=1_000_000,
                tenant_max_cpu=1_000_000,
                rate_limits="tasks=100000/100000,reads=100000/100000",
            )  # fmt: skip  (one tenant submits them all)
            handle = bootstrap.start_orchestrator(settings)
            while len(ray.get(handle.agents.remote())) < 2:
                time.sleep(0.2)
            serve.start(http_options=bootstrap.http_options(settings))
            serve.run(gateway_app(bootstrap.build_gateway, settings.for_replicas(), 1),
                      name="prsm", route_prefix="/")  # fmt: skip
            serve.run(bare_app(), name="bare", route_prefix="/bare")
            url, token = settings.gateway_url, bootstrap.issue_token(settings)
            raw(2000, batched=False)  # warm up the workers
            result: dict[str, Any] = {
                "raw_unbatched": rate(n, raw(n, batched=False)),
                "raw_batched": rate(n, raw(n, batched=True)),
            }
            db = settings.sqlite_path
            result["http"] = asyncio.run(http_phase(url, token, db, n, HTTP_BATCH, 4, limit))
            result["http_single"] = asyncio.run(http_phase(url, token, db, single, 1, 8, limit))
            result["in_process"] = asyncio.run(in_process_phase(settings, n, limit))
            result["submit_latency"] = asyncio.run(latencies(url, token, 100))
            serve.shutdown()  # type: ignore[no-untyped-call]
            scheduler.stop()
            orchestrator.stop()
    finally:
        ray.shutdown()
    http_rate = result["http"]["tasks_per_min"]
    raw_rate = result["raw_unbatched"]["tasks_per_min"]
    lat = result["submit_latency"]
    result |= {
        "target": ">= 50,000 tasks/min through HTTP and >= 1.0 x raw_unbatched; single-submit "
        "p50 <= 3 x the Serve no-op's at 1 and 16 clients",
        "http_vs_raw_unbatched": http_rate / raw_rate,
        "met": http_rate >= 50_000 and http_rate >= raw_rate
        and all(v["p50_ratio"] <= 3 for v in lat.values()),
    }  # fmt: skip
    names = ["raw ray.get", "raw, batched", "HTTP, batches", "HTTP, single", "in process"]
    keys = ["raw_unbatched", "raw_batched", "http", "http_single", "in_process"]
    figure, ax = plt.subplots(figsize=(8, 4))
    ax.bar(names, [result[k]["tasks_per_min"] for k in keys],
           color=["grey", "silver", "C0", "C1", "C2"])  # fmt: skip
    ax.axhline(50_000, color="red", linewidth=0.8, label="target 50,000/min")
    ax.set_ylabel("trivial tasks per minute, submit → SUCCEEDED")
    ax.set_title(f"PRSM through HTTP {http_rate:,.0f}/min vs raw ray.get {raw_rate:,.0f}/min")
    ax.legend()
    write("queue_throughput", result, figure)


if __name__ == "__main__":
    main()
