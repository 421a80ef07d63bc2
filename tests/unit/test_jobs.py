"""The `jobs/` entrypoints' own logic, without a cluster: argument checks, the row records the
batch job writes, the workflow's figure extraction and sweep grid, the load test's figures.
(tests/e2e/prsm_up/test_jobs.py runs each job with `ray job submit`.)"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from jobs import batch_inference, load_test, research_workflow


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicas", "0"], "--replicas must be at least 1"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--accelerator", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_batch_arguments_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        batch_inference.parse_args(["--input", "x.jsonl", "--output", "out", *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_batch_input_and_model_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(batch_inference.BadInput, match="no such file"):
        batch_inference.read_prompts(str(tmp_path / "missing.jsonl"), "prompt")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(batch_inference.BadInput, match=r"expected a \.jsonl, \.csv or \.parquet"):
        batch_inference.read_prompts(str(tmp_path / "data.txt"), "prompt")
    with pytest.raises(batch_inference.BadInput, match="not prsm-tiny, a model folder"):
        batch_inference.resolve_model("no-such-model")
    with pytest.raises(batch_inference.BadInput, match=r"has no config\.json"):
        batch_inference.resolve_model(str(tmp_path))
    assert batch_inference.resolve_model("org/model") == "org/model"  # a hub id
    (tmp_path / "out" / "rows").mkdir(parents=True)
    with pytest.raises(batch_inference.BadInput, match="holds an earlier run's rows"):
        batch_inference._check_fresh(str(tmp_path / "out" / "rows"))
    batch_inference._check_fresh(str(tmp_path / "new" / "rows"))


def test_a_failed_batch_row_keeps_its_id_its_text_prompt_and_the_reason() -> None:
    assert batch_inference._failed(7, None, "the prompt is empty or not text") == {
        "id": "7", "prompt": "", "output": "", "input_tokens": 0, "output_tokens": 0,
        "finish_reason": "error", "error": "the prompt is empty or not text",
    }  # fmt: skip
    assert tuple(batch_inference._failed("a", "p", "x")) == batch_inference.OUTPUT_COLUMNS


def test_the_input_columns_are_read_from_the_file_start_in_each_format(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"id": 1, "text": "x"}\n{"id": 2}\n')
    (tmp_path / "a.csv").write_text("text,id\nx,1\n")
    pq.write_table(pa.table({"q": ["x"], "id": [1]}), tmp_path / "a.parquet")
    (tmp_path / "folder").mkdir()
    pq.write_table(pa.table({"q": ["x"]}), tmp_path / "folder" / "part-0.parquet")
    columns = batch_inference.input_columns
    assert columns(str(tmp_path / "a.jsonl"), "json") == ["id", "text"]
    assert columns(str(tmp_path / "a.csv"), "csv") == ["text", "id"]
    assert columns(str(tmp_path / "a.parquet"), "parquet") == ["q", "id"]
    assert columns(str(tmp_path / "folder"), "parquet") == ["q"]
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(batch_inference.BadInput, match="the first line is not JSON"):
        columns(str(tmp_path / "bad.jsonl"), "json")
    with pytest.raises(batch_inference.BadInput, match=r"has no column 'prompt' \(it has: id, te"):
        batch_inference.read_prompts(str(tmp_path / "a.jsonl"), "prompt")


def test_a_batch_in_the_engine_is_done_when_each_usable_row_has_its_answer_or_error() -> None:
    batch = batch_inference._Batch(["a", "b", "c"], ["p", "", "q"])
    assert batch.usable == [0, 2] and not batch.done.is_set()
    batch.fail(2, "refused")
    assert not batch.done.is_set()
    batch.fail(0, "the engine failed")
    assert batch.done.is_set()
    assert [r["error"] for r in batch.rows] == [
        "the engine failed", "the prompt is empty or not text", "refused"]  # fmt: skip
    assert batch_inference._Batch(["a"], [None]).done.is_set()  # nothing for the engine


def test_the_workflow_reads_back_the_figures_its_synthetic_abstracts_report() -> None:
    abstracts = research_workflow.synthetic_abstracts(5)
    found = [research_workflow.figures(a) for a in abstracts]
    assert all(f is not None and 0.3 <= f[0] <= 1.5 and 1e7 <= f[1] < 1e10 for f in found)
    assert research_workflow.figures("no figures here") is None
    assert research_workflow.figures("we get r = 0.5, K = 2e9.") == (0.5, 2e9)
    assert research_workflow.around(1.0, 0.5, 5) == [0.5, 0.75, 1.0, 1.25, 1.5]


def test_the_load_test_figures() -> None:
    tally = load_test.Tally(started=4, latencies=[0.01, 0.02, 0.03], ttft=[0.005], itl=[0.001])
    tally.errors["tasks HTTP 429"] += 1
    args = argparse.Namespace(gateway="http://g", target="both", concurrency=2, rate=None)
    got = load_test.summary(args, tally, seconds=2.0)
    assert (got["requests"], got["succeeded"], got["failed"]) == (4, 3, 1)
    assert got["errors"] == {"tasks HTTP 429": 1} and got["requests_per_s"] == 1.5
    assert got["latency"] == {"p50_ms": 20.0, "p95_ms": 30.0, "p99_ms": 30.0}
    assert got["inference"]["ttft"]["p50_ms"] == 5.0
    assert load_test.percentiles([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None}
