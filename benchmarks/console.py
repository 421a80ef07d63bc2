"""Console page loads on `prsm up` with 10,000 tasks stored, against the same pages with 100.

Brings PRSM up with its defaults (its own data folder and ports), submits 100 tasks through
the API as one user (`map` tasks) and measures each console view in Debian's Chromium (driven
by Playwright): the baseline (the audit view as the admin, the others as the user). Then it
submits tasks up to 10,000 (batches of 1,000), waits until they have all finished, and
measures again. Among the first 100 is one `map` task of 2,000 items, whose page lists its
subtasks. A load is a fresh page at the view's address, signed in,
until its figures are on the page (`main[data-state=ready]`). Target: every view under 1 s.

    .venv/bin/python -m benchmarks.console [--tasks 10000] [--loads 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib.pyplot as plt
from playwright.sync_api import Browser, sync_playwright

from benchmarks.common import free_port, percentiles, write

TARGET_S = 1.0
BATCH = 1000
BASELINE = 100  # tasks stored for the baseline: enough for two pages of the task list
BIG = 2000  # items of one map task among them: its page lists subtasks from its run's record


def up(data: Path) -> tuple[dict[str, str], str, str]:
    env = {**os.environ, "PRSM_DATA_DIR": str(data), "PRSM_HTTP_PORT": str(free_port()),
           "PRSM_RAY_PORT": str(free_port()), "PRSM_DASHBOARD_PORT": str(free_port()),
           "PRSM_METRICS_PORT": str(free_port())}  # fmt: skip
    env.pop("PRSM_TOKEN", None)
    out = subprocess.run([sys.executable, "-m", "prsm", "up"], env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    token = re.search(r"export PRSM_TOKEN=(\S+)", out)
    assert token, out
    return env, f"http://127.0.0.1:{env['PRSM_HTTP_PORT']}", token.group(1)


def user_token(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "prsm", "token", "--user", "bench",
                           "--tenant", "lab", "--role", "user"], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def views(http: httpx.Client, big_task: str) -> dict[str, str]:
    """Each view's address: the task list's first and a later page, a status filter, one
    task of one item and the task of ``BIG`` items (subtasks, where they ran, result), and
    the other views."""
    first = http.get("/v1/tasks", params={"limit": 50}).json()
    found = {"tasks": "#/tasks", "tasks (filtered)": "#/tasks?status=SUCCEEDED",
             "tasks (page 2)": f"#/tasks?cursor={first['next_cursor']}",
             "task": f"#/tasks/{first['tasks'][0]['id']}",
             f"task ({BIG:,} subtasks)": f"#/tasks/{big_task}"}  # fmt: skip
    for view in ("submit", "models", "rollouts", "cluster"):
        found[view] = f"#/{view}"
    return found


def measure(browser: Browser, gateway: str, token: str, views: dict[str, str], loads: int
            ) -> dict[str, list[float]]:  # fmt: skip
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(f"sessionStorage.setItem('prsm-token', {token!r})")
    page = context.new_page()
    samples: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(loads):
        for name, path in views.items():
            page.goto("about:blank")
            started = time.perf_counter()
            page.goto(f"{gateway}/ui/{path}")
            page.wait_for_selector("main[data-state=ready]", timeout=30_000)
            samples[name].append(time.perf_counter() - started)
            failed = page.locator("main [role=alert]:not(:empty)")
            assert failed.count() == 0, (name, failed.all_inner_texts())
    context.close()
    return samples


def fill(http: httpx.Client, tasks: int) -> float:
    """Submit ``tasks`` tasks, wait until the last has finished; the seconds it took."""
    started = time.perf_counter()
    body = {"type": "map", "params": {"skill": "math.square", "items": [2]}}
    last, done = "", 0
    while done < tasks:
        n = min(BATCH, tasks - done)
        answer = http.post("/v1/tasks", json={"tasks": [body] * n}, timeout=120)
        answer.raise_for_status()
        last, done = answer.json()["tasks"][-1]["id"], done + n
        print(f"  {done:>6,} more tasks submitted", flush=True)
    while http.get(f"/v1/tasks/{last}").json()["status"] not in ("SUCCEEDED", "FAILED"):
        time.sleep(2)
    return time.perf_counter() - started


def plot(result: dict[str, Any]) -> Any:
    names = list(result["with_tasks"])
    figure, ax = plt.subplots(figsize=(9, 4))
    width = 0.38
    for i, (key, label) in enumerate((("baseline", f"{BASELINE} tasks (baseline)"),
                                      ("with_tasks", f"{result['tasks']:,} tasks"))):  # fmt: skip
        values = [result[key].get(n, {}).get("p95_ms", 0) for n in names]
        ax.bar([x + (i - 0.5) * width for x in range(len(names))], values, width, label=label)
    ax.axhline(TARGET_S * 1000, linestyle="--", color="red", linewidth=0.8, label="target 1 s")
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set_ylabel("page load p95 (ms)")
    ax.set_title("PRSM console on `prsm up`: page loads in Chromium")
    ax.legend()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: python3 scripts/install.py --test"
    with tempfile.TemporaryDirectory() as tmp:
        env, gateway, admin = up(Path(tmp) / "data")
        audit = {"audit": "#/audit", "audit (filtered)": "#/audit?user_id=bench&allowed=true"}
        try:
            token = user_token(env)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=gateway, headers=headers, timeout=30) as http, \
                    sync_playwright() as p:  # fmt: skip
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                big = {"type": "map", "params": {"skill": "math.square", "items": list(range(BIG))}}
                big_task = http.post("/v1/tasks", json=big).raise_for_status().json()["id"]
                fill(http, BASELINE - 1)
                baseline = measure(browser, gateway, token, views(http, big_task), args.loads)
                baseline |= measure(browser, gateway, admin, audit, args.loads)
                print(f"storing tasks up to {args.tasks:,} …", flush=True)
                fill_s = fill(http, args.tasks - BASELINE)
                full = measure(browser, gateway, token, views(http, big_task), args.loads)
                full |= measure(browser, gateway, admin, audit, args.loads)
                browser.close()
        finally:
            subprocess.run([sys.executable, "-m", "prsm", "down"], env=env, check=False)
    result = {
        "tasks": args.tasks,
        "loads_per_view": args.loads,
        "fill_s": round(fill_s, 1),  # submitting the rest and running them to the end
        "target_ms": TARGET_S * 1000,
        "baseline_tasks": BASELINE,
        "baseline": {name: percentiles(s) for name, s in baseline.items()},
        "with_tasks": {name: percentiles(s) for name, s in full.items()},
    }
    result["all_under_target"] = all(v["p95_ms"] < TARGET_S * 1000
                                     for v in result["with_tasks"].values())  # fmt: skip
    write("console", result, plot(result))


if __name__ == "__main__":
    main()
