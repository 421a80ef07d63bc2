"""A research workflow through the PRSM SDK: extract, simulate, summarise, report.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/research_workflow.py --gateway http://127.0.0.1:8000 --output report/

1. Abstracts (``--abstracts`` JSONL with a ``text`` field, or a synthetic set the job writes)
   report a growth rate ``r`` and a carrying capacity ``K``.
2. A ``prompt`` task asks ``--model`` to extract them. An answer that holds no readable
   figures falls back to a pattern match over the abstract, and the report says which way
   each figure came (PRSM's tiny test model answers noise, so there every figure falls back).
3. A ``sweep`` task of ``sim.logistic`` around the extracted values (``--spread``, ``--steps``
   per parameter) finds the outliers of the time to half capacity, and the model summarises
   them (``summarise_with``).
4. ``report.md`` and ``sweep.png`` go to ``--output``.

The gateway token comes from ``$PRSM_TOKEN``. Task progress shows as it runs; a bad argument
or a task that fails ends the job with a non-zero exit and the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from prsm.client import PrsmAPIError, PrsmClient

ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
FIGURES = re.compile(r"\br\s*=\s*([0-9.]+(?:e[-+]?\d+)?).*?\bK\s*=\s*([0-9.]+(?:e[-+]?\d+)?)",
                     re.IGNORECASE | re.DOTALL)  # fmt: skip
console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateway", default=os.environ.get("PRSM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--model", default="prsm-tiny", help="the model that reads and summarises")
    p.add_argument("--abstracts", default=None, help="JSONL with a `text` field per abstract")
    p.add_argument("--synthetic", type=int, default=8, help="abstracts to generate if none")
    p.add_argument("--spread", type=float, default=0.5, help="sweep ± this share of a value")
    p.add_argument("--steps", type=int, default=5, help="values per parameter in the sweep")
    p.add_argument("--z", type=float, default=1.5, help="outlier threshold (std devs)")
    p.add_argument("--output", required=True, help="folder for report.md and sweep.png")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait per task")
    args = p.parse_args(argv)
    if args.steps < 2 or not 0 < args.spread < 1 or args.synthetic < 1:
        p.error("--steps must be at least 2, --spread in (0, 1), --synthetic at least 1")
    return args


def synthetic_abstracts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    organisms = ("E. coli", "B. subtilis", "S. cerevisiae", "P. putida", "yeast isolate")
    out = []
    for i in range(n):
        r, k = round(rng.uniform(0.3, 1.5), 3), f"{rng.uniform(1, 9):.1f}e{rng.randint(7, 9)}"
        out.append(f"Study {i + 1}: cultures of {rng.choice(organisms)} grew logistically "
                   f"with a rate r = {r} per hour and a capacity K = {k} cells/mL.")  # fmt: skip
    return out


def read_abstracts(args: argparse.Namespace) -> list[str]:
    if args.abstracts is None:
        return synthetic_abstracts(args.synthetic)
    path = Path(args.abstracts)
    if not path.is_file():
        raise SystemExit(f"error: --abstracts {path}: no such file")
    texts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: --abstracts line {n}: not a JSON object with `text`") from e
    if not texts:
        raise SystemExit(f"error: --abstracts {path} holds no abstracts")
    return texts


def figures(text: str) -> tuple[float, float] | None:
    found = FIGURES.search(text)
    return (float(found.group(1)), float(found.group(2))) if found else None


def follow(client: PrsmClient, task_id: str, what: str, timeout_s: float) -> dict[str, Any]:
    """Show the task's progress until it ends; its final state."""
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        row = bar.add_task(what, total=1.0, status="QUEUED")
        while True:
            task = client.get(task_id)
            bar.update(row, completed=task.progress, status=task.status.value)
            if task.status.value in ENDED:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"error: {what} ({task_id}) did not end in {timeout_s:.0f} s")
            time.sleep(0.5)
    if task.status.value != "SUCCEEDED":
        raise SystemExit(f"error: {what} ({task_id}) {task.status.value}: {task.error}")
    return task.model_dump(mode="json")


def around(value: float, spread: float, steps: int) -> list[float]:
    low, high = value * (1 - spread), value * (1 + spread)
    return [float(f"{low + (high - low) * i / (steps - 1):.6g}") for i in range(steps)]


def plot(result: dict[str, Any], sets: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flagged = {o["index"] for o in result["outliers"]}
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [s["r"] for s in sets]
    colours = ["tab:red" if i in flagged else "tab:blue" for i in range(len(sets))]
    ax.scatter(xs, result["values"], c=colours, s=18)
    ax.set_xlabel("growth rate r (per hour)")
    ax.set_ylabel(f"{result['metric']} (hours)")
    ax.set_title(f"sim.logistic sweep: {len(sets)} sets, outliers in red")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(abstracts: list[str], extracted: list[dict[str, Any]], sweep: dict[str, Any],
           sets: list[dict[str, float]], args: argparse.Namespace) -> str:  # fmt: skip
    result = sweep["result"]
    lines = ["# Research workflow report", "",
             f"Model `{args.model}` through {args.gateway}; {len(abstracts)} abstracts; "
             f"sweep task `{sweep['id']}` of {result['count']} parameter sets.", "",
             "## Extracted figures", "", "| # | r | K | from |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {i + 1} | {e['r']:.4g} | {e['K']:.4g} | {e['source']} |"
              for i, e in enumerate(extracted)]  # fmt: skip
    stats = result["stats"]
    lines += ["", "## Sweep", "",
              f"`{result['metric']}`: mean {stats['mean']:.4g}, std {stats['std']:.4g}, "
              f"range {stats['min']:.4g} to {stats['max']:.4g}; "
              f"{len(result['outliers'])} outliers at |z| ≥ {args.z}.", "",
              "![sweep](sweep.png)", "",
              "| set | r | K | value | z |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {o['index']} | {o['params']['r']:.4g} | {o['params']['K']:.4g} | "
              f"{o['value']:.4g} | {o['z']:+.2f} |" for o in result["outliers"]]  # fmt: skip
    lines += ["", "## The model's summary of the outliers", "", f"> {result['summary']!s}", ""]
    return "\n".join(lines)


def run(
    client: PrsmClient, args: argparse.Namespace, abstracts: list[str]
) -> tuple[list[dict[str, Any]], dict[str, list[float]], dict[str, Any]]:
    """The two tasks: the figures each abstract reports, the sweep's grid and its task."""
    asks = [f"From this abstract, give r and K as `r = <number>, K = <number>`.\n{a}"
            for a in abstracts]  # fmt: skip
    task = client.submit("prompt", {"model": args.model, "prompts": asks,
                                    "max_tokens": 24})  # fmt: skip
    answers = follow(client, task.id, "extract figures", args.timeout)["result"]
    extracted: list[dict[str, Any]] = []
    for text, answer in zip(abstracts, answers["outputs"], strict=True):
        by_model = figures(str(answer))
        found = by_model or figures(text)
        if found is None:
            raise SystemExit(f"error: no r and K in the abstract {text[:80]!r}")
        source = "model" if by_model else "pattern (model unreadable)"
        extracted.append({"r": found[0], "K": found[1], "source": source})
    mean_r = sum(e["r"] for e in extracted) / len(extracted)
    mean_k = sum(e["K"] for e in extracted) / len(extracted)
    grid = {"r": around(mean_r, args.spread, args.steps),
            "K": around(mean_k, args.spread, args.steps), "y0": [mean_k / 1000],
            "t_end": [60.0]}  # fmt: skip
    task = client.submit("sweep", {"skill": "sim.logistic", "grid": grid,
                                   "metric": "t_half", "z": args.z,
                                   "summarise_with": args.model, "max_tokens": 64})  # fmt: skip
    sweep = follow(client, task.id, "sweep and summary", args.timeout)
    return extracted, grid, sweep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = os.environ.get("PRSM_TOKEN")
    if not token:
        raise SystemExit("error: set PRSM_TOKEN to a PRSM token (prsm token, or an API key)")
    abstracts = read_abstracts(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    client = PrsmClient(args.gateway, token, timeout=60)
    try:
        client.whoami()
        extracted, grid, sweep = run(client, args, abstracts)
    except PrsmAPIError as e:
        raise SystemExit(f"error: the gateway refused: {e}") from e
    finally:
        client.close()
    sets = [{"r": r, "K": k} for r in grid["r"] for k in grid["K"]]
    plot(sweep["result"], sets, out / "sweep.png")
    (out / "report.md").write_text(report(abstracts, extracted, sweep, sets, args))
    print(json.dumps({"report": str(out / "report.md"), "plot": str(out / "sweep.png"),
                      "abstracts": len(abstracts), "sets": len(sets),
                      "outliers": len(sweep["result"]["outliers"])}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
