"""Load generation against a PRSM gateway: tasks, streamed inference, or both.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/load_test.py --gateway http://127.0.0.1:8000 --target inference \\
        --concurrency 8 --duration 30 --output load/

``--concurrency N`` keeps N requests in flight (closed loop); ``--rate R`` starts R requests
a second whatever the answers do (open loop, what a crowd of users does), at most
``--max-in-flight`` at once. A task request submits a one-item ``map`` of ``math.square``; an
inference request streams a chat completion of ``--max-tokens``. Reported: requests and
their rate, errors by HTTP status (or exception), latency p50/p95/p99 and, for inference,
time to first token, inter-token latency and output tokens/s. ``load.json`` and ``load.png``
go to ``--output``. The token comes from ``$PRSM_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn

console = Console(stderr=True)


@dataclass
class Tally:
    started: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0  # --rate only: due while --max-in-flight were out
    series: list[tuple[float, float]] = field(default_factory=list)  # (t, latency)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateway", default=os.environ.get("PRSM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--target", choices=("tasks", "inference", "both"), default="both")
    p.add_argument("--model", default="prsm-tiny")
    p.add_argument("--max-tokens", type=int, default=32)
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, default=None, help="requests kept in flight")
    load.add_argument("--rate", type=float, default=None, help="requests started per second")
    p.add_argument("--max-in-flight", type=int, default=256, help="bound for --rate")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--output", required=True, help="folder for load.json and load.png")
    args = p.parse_args(argv)
    if args.concurrency is None and args.rate is None:
        args.concurrency = 4
    if (args.concurrency or 1) < 1 or (args.rate or 1) <= 0 or args.duration <= 0:
        p.error("--concurrency, --rate and --duration must be positive")
    if args.max_tokens < 1 or args.max_in_flight < 1:
        p.error("--max-tokens and --max-in-flight must be at least 1")
    return args


async def task_request(http: httpx.AsyncClient, args: argparse.Namespace, t: Tally) -> None:
    body = {"type": "map", "params": {"skill": "math.square", "items": [3]}}
    r = await http.post("/v1/tasks", json=body)
    if r.status_code not in (200, 201, 202):
        raise Failed(f"tasks HTTP {r.status_code}")


async def inference_request(http: httpx.AsyncClient, args: argparse.Namespace, t: Tally) -> None:
    body = {"model": args.model, "stream": True, "max_tokens": args.max_tokens,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Tell me about the sea."}]}  # fmt: skip
    start = time.perf_counter()
    first = last = 0.0
    produced = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise Failed(f"inference HTTP {r.status_code}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):  # the last chunk: the tokens the request produced
                produced = int(chunk["usage"].get("completion_tokens") or 0)
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                last = time.perf_counter()
                first = first or last
    if not first:
        raise Failed("inference stream without content")
    t.ttft.append(first - start)
    t.tokens += produced
    if produced > 1:  # a chunk may carry several tokens: spread the time over the tokens
        t.itl.append((last - first) / (produced - 1))


class Failed(Exception):
    pass


async def one(http: httpx.AsyncClient, args: argparse.Namespace, t: Tally, t0: float) -> None:
    kinds = {"tasks": [task_request], "inference": [inference_request],
             "both": [task_request, inference_request]}[args.target]  # fmt: skip
    request = kinds[t.started % len(kinds)]
    t.started += 1
    start = time.perf_counter()
    try:
        await request(http, args, t)
    except Failed as e:
        t.errors[str(e)] += 1
        return
    except httpx.HTTPError as e:
        t.errors[type(e).__name__] += 1
        return
    t.latencies.append(time.perf_counter() - start)
    t.series.append((start - t0, time.perf_counter() - start))


async def drive(args: argparse.Namespace, token: str) -> tuple[Tally, float]:
    t = Tally()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.max_in_flight + 8)
    async with httpx.AsyncClient(base_url=args.gateway.rstrip("/"), headers=headers,
                                 timeout=120, limits=limits) as http:  # fmt: skip
        r = await http.get("/v1/whoami")
        if r.status_code != 200:
            raise SystemExit(f"error: {args.gateway} refused the token: {r.status_code} {r.text}")
        if (
            args.target != "tasks"
            and (await http.get(f"/v1/models/{args.model}")).status_code != 200
        ):
            raise SystemExit(f"error: the gateway serves no model {args.model!r}")
        t0 = time.perf_counter()
        end = t0 + args.duration
        with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console) as bar:
            row = bar.add_task("load", total=args.duration)
            watcher = asyncio.create_task(_show(bar, row, t0, end))
            if args.concurrency:
                await asyncio.gather(
                    *(_loop(http, args, t, t0, end) for _ in range(args.concurrency))
                )
            else:
                await _open_loop(http, args, t, t0, end)
            watcher.cancel()
        return t, time.perf_counter() - t0


async def _show(bar: Progress, row: Any, t0: float, end: float) -> None:
    while True:
        bar.update(row, completed=min(time.perf_counter(), end) - t0)
        await asyncio.sleep(0.5)


async def _loop(http: httpx.AsyncClient, args: argparse.Namespace, t: Tally, t0: float,
                end: float) -> None:  # fmt: skip
    while time.perf_counter() < end:
        await one(http, args, t, t0)


async def _open_loop(http: httpx.AsyncClient, args: argparse.Namespace, t: Tally, t0: float,
                     end: float) -> None:  # fmt: skip
    gate = asyncio.Semaphore(args.max_in_flight)
    running: set[asyncio.Task[None]] = set()

    async def gated() -> None:
        async with gate:
            await one(http, args, t, t0)

    n = 0
    while (now := time.perf_counter()) < end:
        due = t0 + n / args.rate
        if due > now:
            await asyncio.sleep(due - now)
        if gate.locked():
            t.not_sent += 1
        else:
            job = asyncio.create_task(gated())
            running.add(job)
            job.add_done_callback(running.discard)
        n += 1
    await asyncio.gather(*running)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def summary(args: argparse.Namespace, t: Tally, seconds: float) -> dict[str, Any]:
    done = len(t.latencies)
    out: dict[str, Any] = {
        "gateway": args.gateway, "target": args.target, "seconds": round(seconds, 2),
        "load": {"concurrency": args.concurrency} if args.concurrency else {"rate": args.rate},
        "requests": t.started, "succeeded": done, "failed": sum(t.errors.values()),
        "requests_per_s": round(done / seconds, 2), "errors": dict(t.errors),
        "not_sent_at_max_in_flight": t.not_sent,
        "latency": percentiles(t.latencies),
    }  # fmt: skip
    if args.target != "tasks":
        out["inference"] = {"ttft": percentiles(t.ttft), "inter_token": percentiles(t.itl),
                            "output_tokens": t.tokens,
                            "output_tokens_per_s": round(t.tokens / seconds, 1)}  # fmt: skip
    return out


def plot(t: Tally, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if t.series:
        xs, ys = zip(*t.series, strict=True)
        left.scatter(xs, [1000 * y for y in ys], s=4)
    left.set(xlabel="seconds into the run", ylabel="latency (ms)", title="request latency")
    if t.ttft:
        right.hist([1000 * x for x in t.ttft], bins=30, alpha=0.7, label="TTFT")
    if t.itl:
        right.hist([1000 * x for x in t.itl], bins=30, alpha=0.7, label="inter-token")
    right.set(xlabel="ms", ylabel="count", title="inference")
    if t.ttft or t.itl:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = os.environ.get("PRSM_TOKEN")
    if not token:
        raise SystemExit("error: set PRSM_TOKEN to a PRSM token (prsm token, or an API key)")
    try:
        t, seconds = asyncio.run(drive(args, token))
    except httpx.HTTPError as e:
        raise SystemExit(f"error: cannot reach {args.gateway}: {e}") from e
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result = summary(args, t, seconds)
    (out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(t, out / "load.png")
    print(json.dumps(result, indent=2))
    return 0 if result["succeeded"] else 1


if __name__ == "__main__":
    sys.exit(main())
