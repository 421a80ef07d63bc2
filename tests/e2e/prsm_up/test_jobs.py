"""The `jobs/` entrypoints as users run them: the real `ray job submit` CLI against the cluster
`prsm up` starts (its dashboard, Ray token authentication on), each job's status and outputs
checked — batch inference through vLLM engines in Ray Data and through the gateway, the
research workflow's report, the load test's figures, and bad input failing the job with its
reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[3]
RAY = str(Path(sys.executable).parent / "ray")


def submit(cluster: dict[str, Any], *entrypoint: str, env_vars: dict[str, str] | None = None,
           ) -> tuple[str, str]:  # fmt: skip
    """`ray job submit` (it waits for the job's end), then `ray job status` and `ray job
    logs`, as a user would: the job's final status line and its logs."""
    job_id = f"test-{uuid.uuid4().hex[:8]}"
    address = ["--address", cluster["address"]]
    command = [RAY, "job", "submit", *address, "--submission-id", job_id,
               "--working-dir", str(ROOT)]  # fmt: skip
    if env_vars:
        command += ["--runtime-env-json", json.dumps({"env_vars": env_vars})]
    done = ray(cluster, *command, "--", "python", *entrypoint)
    asked = ray(cluster, RAY, "job", "status", *address, job_id)
    status = asked.stdout + asked.stderr
    found = re.search(rf"Job '{job_id}' (succeeded|failed|was stopped)", status)
    assert found, status
    ended = {"succeeded": "SUCCEEDED", "failed": "FAILED"}.get(found.group(1), "STOPPED")
    assert (done.returncode == 0) == (ended == "SUCCEEDED"), done.stderr
    logs = ray(cluster, RAY, "job", "logs", *address, job_id).stdout
    return ended, status + logs


def ray(cluster: dict[str, Any], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=cluster["env"], capture_output=True, text=True,
                          timeout=580, check=False)  # fmt: skip


def rows(folder: Path) -> list[dict[str, Any]]:
    table = pq.read_table(folder / "rows")
    assert table.column_names == ["id", "prompt", "output", "input_tokens", "output_tokens",
                                  "finish_reason", "error"]  # fmt: skip
    return list(table.to_pylist())


def test_batch_inference_runs_vllm_engines_in_ray_data_and_records_failed_rows(
    cluster: dict[str, Any],
) -> None:
    prompts = cluster["tmp"] / "prompts.jsonl"
    lines = [{"prompt": f"Sample {i}: the measured value is"} for i in range(40)]
    # Two rows the engine cannot take, in the middle of the others' batches: an empty prompt
    # and one longer than the model's context.
    long_prompt = "measured " * 400
    bad = [{"prompt": ""}, {"prompt": long_prompt}]
    prompts.write_text("\n".join(json.dumps(x) for x in [*lines[:20], *bad, *lines[20:]]) + "\n")
    out = cluster["tmp"] / "engine-out"
    status, logs = submit(
        cluster, "jobs/batch_inference.py", "--input", str(prompts), "--model", "prsm-tiny",
        "--output", str(out), "--max-tokens", "16", "--batch-size", "16",
        "--max-model-len", "256",
    )  # fmt: skip
    assert status == "SUCCEEDED", logs[-4000:]
    got = rows(out)
    assert len(got) == 42 and len({r["id"] for r in got}) == 42
    failed = sorted((r for r in got if r["error"]), key=lambda r: len(r["prompt"]))
    assert [(r["prompt"], r["finish_reason"]) for r in failed] == [
        ("", "error"), (long_prompt, "error")]  # fmt: skip
    assert failed[0]["error"] == "the prompt is empty or not text"
    assert "maximum context length is 256 tokens" in failed[1]["error"]
    done = [r for r in got if not r["error"]]
    assert {r["prompt"] for r in done} == {x["prompt"] for x in lines}
    assert all(r["output"] and 1 <= r["output_tokens"] <= 16 and r["input_tokens"] > 0
               and r["finish_reason"] in ("length", "stop") for r in done)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows"], summary["succeeded"], summary["failed"]) == (42, 40, 2)
    assert summary["output_tokens"] == sum(r["output_tokens"] for r in done)
    assert "vLLM engines" in summary["via"]
    # The engine's timings, in the job's log: its start, and each batch with its idle time.
    assert re.search(r"engine: started in \d+\.\d s", logs), logs[-4000:]
    assert re.search(r"engine: \d+ rows in \d+\.\d+ s, idle \d+\.\d+ s before", logs)


def test_batch_inference_through_the_gateway_from_parquet(cluster: dict[str, Any]) -> None:
    source = cluster["tmp"] / "questions.parquet"
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(12)],
                             "text": [f"Question {i}?" for i in range(12)]}), source)  # fmt: skip
    out = cluster["tmp"] / "gateway-out"
    status, logs = submit(
        cluster, "jobs/batch_inference.py", "--input", str(source), "--column", "text",
        "--via-gateway", cluster["gateway"], "--model", "prsm-tiny", "--output", str(out),
        "--max-tokens", "8", "--concurrency", "4",
        env_vars={"PRSM_TOKEN": cluster["token"]},
    )  # fmt: skip
    assert status == "SUCCEEDED", logs[-4000:]
    got = rows(out)
    assert sorted(r["id"] for r in got) == sorted(f"q{i}" for i in range(12))
    assert all(not r["error"] and r["output_tokens"] >= 1 and r["finish_reason"] for r in got)
    assert "gateway" in json.loads((out / "summary.json").read_text())["via"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--input", "/nowhere/prompts.jsonl"], "/nowhere/prompts.jsonl: no such file"),
        (["--model", "no-such-model"], "--model no-such-model: not prsm-tiny"),
        (["--column", "question"], "has no column 'question' (it has: prompt)"),
    ],
    ids=["missing-file", "unknown-model", "bad-column"],
)
def test_batch_inference_bad_input_fails_the_job_with_its_reason(
    cluster: dict[str, Any], args: list[str], reason: str
) -> None:
    prompts = cluster["tmp"] / "few.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    given = {"--input": str(prompts), "--output": str(cluster["tmp"] / "bad-out")}
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for pair in given.items() for x in pair]
    status, logs = submit(cluster, "jobs/batch_inference.py", *flat)
    assert status == "FAILED"
    assert "exit code 2" in logs and reason in logs
    assert "Traceback" not in logs


def test_the_research_workflow_writes_its_report(cluster: dict[str, Any]) -> None:
    out = cluster["tmp"] / "report"
    status, logs = submit(
        cluster, "jobs/research_workflow.py", "--gateway", cluster["gateway"],
        "--output", str(out), "--synthetic", "6", "--steps", "4",
        env_vars={"PRSM_TOKEN": cluster["token"]},
    )  # fmt: skip
    assert status == "SUCCEEDED", logs[-4000:]
    report = (out / "report.md").read_text()
    assert report.count("| pattern (model unreadable) |") + report.count("| model |") == 6
    assert "sweep task" in report and "16 parameter sets" in report
    assert "## The model's summary of the outliers" in report
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_load_test_reports_throughput_errors_and_latency(cluster: dict[str, Any]) -> None:
    out = cluster["tmp"] / "load"
    status, logs = submit(
        cluster, "jobs/load_test.py", "--gateway", cluster["gateway"], "--target", "both",
        "--concurrency", "2", "--duration", "6", "--max-tokens", "8", "--output", str(out),
        env_vars={"PRSM_TOKEN": cluster["token"]},
    )  # fmt: skip
    assert status == "SUCCEEDED", logs[-4000:]
    load = json.loads((out / "load.json").read_text())
    assert load["succeeded"] > 2 and load["failed"] == sum(load["errors"].values())
    assert load["requests"] == load["succeeded"] + load["failed"]
    assert load["latency"]["p50_ms"] > 0 and load["inference"]["ttft"]["p50_ms"] > 0
    assert load["inference"]["output_tokens"] > 0
    assert (out / "load.png").is_file()
    # A token the gateway does not take fails the job with the reason.
    status, logs = submit(cluster, "jobs/load_test.py", "--gateway", cluster["gateway"],
                             "--duration", "1", "--output", str(out),
                             env_vars={"PRSM_TOKEN": "not-a-token"})  # fmt: skip
    assert status == "FAILED" and "refused the token: 401" in logs
