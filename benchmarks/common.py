"""Shared by the benchmarks: percentiles, and results written as JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean of latencies given in seconds, reported in milliseconds."""
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(name: str, result: dict[str, Any], figure: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    figure.savefig(RESULTS / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    print(json.dumps(result, indent=2))
    return path
