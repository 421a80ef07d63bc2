"""Gateway latency: `GET /v1/whoami` on the PRSM gateway — authenticated, authorised by the
policy, rate-limited in Redis (one atomic script per request; the limit set high enough never
to refuse) and audited — against a bare Ray Serve FastAPI no-op, both deployed on the same
local Serve in the same run, at 1 and 32 concurrent clients. Rounds alternate between the two
so drift on a shared machine hits both alike. Target: PRSM p95 <= 1.15 x bare p95.

    .venv/bin/python -m benchmarks.gateway_latency [--rounds 5] [--per-round 400]
        [--redis redis://127.0.0.1:6379/0]   (--redis "" : in-process buckets)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib.pyplot as plt
import ray
from fastapi import FastAPI, Request
from ray import serve

from benchmarks.common import free_port, percentiles, write
from prsm import bootstrap
from prsm.config import Settings
from prsm.serve.deployment import gateway_app

CONCURRENCY = (1, 32)


def bare_app() -> Any:
    app = FastAPI()

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/noop")
    async def noop_with_body(request: Request) -> dict[str, bool]:
        await request.body()  # Serve's proxy hands a body over in a call of its own
        return {"ok": True}

    @serve.deployment(name="bare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    @serve.ingress(app)
    class Bare:
        pass

    return Bare.bind()  # type: ignore[attr-defined]


async def load(url: str, headers: dict[str, str], clients: int, total: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:

        async def client() -> None:
            while len(latencies) < total:
                started = time.perf_counter()
                response = await http.get(url)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def measure(
    targets: dict[str, tuple[str, dict[str, str]]], rounds: int, per_round: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for clients in CONCURRENCY:
        samples: dict[str, list[float]] = {name: [] for name in targets}
        for url, headers in targets.values():  # warm up
            await load(url, headers, clients, 200)
        for _ in range(rounds):
            for name, (url, headers) in targets.items():
                samples[name] += await load(url, headers, clients, per_round * max(1, clients // 8))
        stats: dict[str, Any] = {n: percentiles(v) for n, v in samples.items()}
        stats["ratio_p95"] = stats["prsm"]["p95_ms"] / stats["bare"]["p95_ms"]
        stats["ratio_p50"] = stats["prsm"]["p50_ms"] / stats["bare"]["p50_ms"]
        results[f"clients_{clients}"] = stats
        print(f"{clients} clients: {stats}", flush=True)
    return results


def plot(results: dict[str, Any]) -> Any:
    figure, axes = plt.subplots(1, len(CONCURRENCY), figsize=(9, 4))
    for ax, clients in zip(axes, CONCURRENCY, strict=True):
        stats = results[f"clients_{clients}"]
        names = ["bare", "prsm"]
        for offset, quantile in ((-0.2, "p50_ms"), (0.2, "p95_ms")):
            ax.bar(
                [i + offset for i in range(2)],
                [stats[n][quantile] for n in names],
                width=0.4,
                label=quantile,
            )
        ax.set_xticks(range(2), ["bare Serve no-op", "PRSM /v1/whoami"])
        ax.set_title(f"{clients} client(s): p95 ratio {stats['ratio_p95']:.2f}")
        ax.set_ylabel("latency (ms)")
        ax.legend()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=400)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            http_port=free_port(),
            redis_url=args.redis,
            rate_limits="reads=1000000/1000000",
            rate_limit_fail_open=False,  # a Redis problem shows as errors, not as speed
        )
        ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
            serve.run(bare_app(), name="bare", route_prefix="/bare")
            gateway = gateway_app(bootstrap.build_gateway, settings.for_replicas(), replicas=1)
            serve.run(gateway, name="prsm", route_prefix="/")
            base = f"http://127.0.0.1:{settings.http_port}"
            token = bootstrap.issue_token(settings, "bench", "bench", frozenset({"user"}))
            targets = {
                "bare": (f"{base}/bare/noop", {}),
                "prsm": (f"{base}/v1/whoami", {"Authorization": f"Bearer {token}"}),
            }
            results = asyncio.run(measure(targets, args.rounds, args.per_round))
        finally:
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
    write(
        "gateway_latency",
        {
            "target": "prsm p95 <= 1.15 x bare p95",
            "prsm": "GET /v1/whoami: JWT, policy, rate limit, audit",
            "rate_limits": f"Redis {args.redis}" if args.redis else "in-process",
            "rounds": args.rounds,
            "results": results,
        },
        plot(results),
    )


if __name__ == "__main__":
    main()
