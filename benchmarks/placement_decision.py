"""Placement decision cost with 10, 100, 1,000 and 10,000 simulated nodes (zones of 10): one
``NodeIndex.place`` of a 4-bundle request per strategy, the nodes kept ordered by free CPU.
Beside it, the straightforward decision — sort every node by free CPU, then take the first
that fits — to show what the index saves. Domain only, no Ray. Target: the cost at 10,000
nodes ≤ 3 × the cost at 10.

    .venv/bin/python -m benchmarks.placement_decision [--decisions 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.common import write
from prsm.domain.placement import Bundle, Node, NodeIndex, PlacementStrategy

SIZES = (10, 100, 1_000, 10_000)
BUNDLES = [Bundle(cpu=2, memory_gb=4)] * 4


def nodes(n: int, rng: random.Random) -> list[Node]:
    return [Node(f"node-{i}", cpu=rng.choice([4, 8, 16, 32]), memory_gb=rng.choice([16, 64]),
                 zone=f"z{i // 10}", region=f"r{i // 100}") for i in range(n)]  # fmt: skip


def sort_everything(all_nodes: list[Node], bundles: list[Bundle]) -> list[str]:
    ranked = sorted(all_nodes, key=lambda n: (-n.cpu, -n.memory_gb))
    return [next(n.node_id for n in ranked if n.fits(b)) for b in bundles]


def timed(fn: Any, count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    return {"mean_ms": statistics.fmean(ordered) * 1000,
            "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(11)
    results: dict[str, dict[str, Any]] = {}
    for n in SIZES:
        cluster = nodes(n, rng)
        index = NodeIndex()
        index.upsert_many(Node(x.node_id, x.cpu, x.gpu, x.memory_gb, x.zone, x.region)
                          for x in cluster)  # fmt: skip
        row: dict[str, Any] = {}
        for strategy in PlacementStrategy:
            zone = "z0" if strategy is PlacementStrategy.LATENCY else ""

            def decide(s: PlacementStrategy = strategy, z: str = zone,
                       idx: NodeIndex = index) -> None:  # fmt: skip
                idx.place(BUNDLES, s, caller_zone=z)

            timed(decide, 100)  # warm up
            row[strategy.value] = timed(decide, args.decisions)
        row["sort_everything"] = timed(lambda c=cluster: sort_everything(c, BUNDLES),
                                       max(20, args.decisions // max(1, n // 100)))  # fmt: skip
        results[str(n)] = row
        print(n, row, flush=True)
    ratios = {s.value: results["10000"][s.value]["mean_ms"] / results["10"][s.value]["mean_ms"]
              for s in PlacementStrategy}  # fmt: skip
    figure, ax = plt.subplots(figsize=(7, 4))
    for name in [s.value for s in PlacementStrategy] + ["sort_everything"]:
        style = "s--" if name == "sort_everything" else "o-"
        ax.plot(SIZES, [results[str(n)][name]["mean_ms"] for n in SIZES], style, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("one placement decision, mean (ms)")
    ax.legend(fontsize=8)
    write("placement_decision", {
        "target": "mean decision cost at 10,000 nodes <= 3 x at 10",
        "ratio_10000_to_10": ratios,
        "met": all(r <= 3.0 for r in ratios.values()),
        "results": results,
    }, figure)  # fmt: skip


if __name__ == "__main__":
    main()
