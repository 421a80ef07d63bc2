"""The Grafana dashboard's panel queries and the Prometheus binaries, for the tests that check
the dashboard and the alert rules (unit: with promtool; end to end: with a real Prometheus)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "cluster" / "grafana" / "prsm.json"
PROMETHEUS_DIR = ROOT / "cluster" / "prometheus"
IN_CI = os.environ.get("CI", "").lower() == "true"


def panels() -> list[dict[str, object]]:
    """Every panel that shows data (rows left out)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p.get("type") != "row"]


def panel_queries(window: str) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every query of every panel, Grafana's range variables
    replaced by ``window`` (e.g. ``5m``)."""
    out = []
    for panel in panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            expr = str(target["expr"])
            for variable in ("$__rate_interval", "$__range", "$__interval"):
                expr = expr.replace(variable, window)
            out.append((str(panel["title"]), expr))
    return out


def require(binary: str) -> str:
    """The path of a Prometheus binary; skipped where it is missing, failed in CI (where
    ``scripts/install.py --test`` installs it)."""
    found = shutil.which(binary)
    if found is None:
        why = f"`{binary}` is not installed (python3 scripts/install.py --test installs it)"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    return found
