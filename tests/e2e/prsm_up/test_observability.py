"""The Grafana dashboard and the alert rules against a real Prometheus: the platform `prsm up`
started runs a short workload (tasks that succeed, fail and are cancelled; streamed chat
completions and one the engine refuses; requests denied and rate-limited; a canary rollout
the controller holds and the user aborts), a `prometheus` binary scrapes it with the scrape
configuration `prsm up` wrote, and every query of every panel returns at least one series
through Prometheus's HTTP API; every alert rule evaluates without error."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from prsm.client import PrsmClient
from tests.dashboards import DASHBOARD, panel_queries, require
from tests.e2e.cli import prsm
from tests.support import free_port

pytestmark = pytest.mark.ray

MODEL = "prsm-tiny"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def prometheus(cluster: dict[str, Any]) -> Iterator[str]:
    """Prometheus on a free port with the scrape configuration `prsm up` wrote (and printed),
    scraping and evaluating every second."""
    binary = require("prometheus")
    out = cluster["up_output"]
    assert str(DASHBOARD) in out, out
    found = re.search(r"--config\.file=(\S+)", out)
    assert found, out
    config = yaml.safe_load(Path(found.group(1)).read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s",
                        "evaluation_interval": "1s"}  # fmt: skip
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets == {"prsm-gateway": [cluster["gateway"].removeprefix("http://")],
                       "ray": [cluster["metrics"]]}, targets  # fmt: skip
    folder = cluster["tmp"] / "prometheus"
    folder.mkdir()
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/-/ready"):
            assert process.poll() is None, (folder / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tasks(client: PrsmClient) -> dict[str, str]:
    """Tasks that succeed, fail (a skill refusing its input, on every try) and are cancelled;
    their final statuses."""
    ok = client.map("math.primes_below", [1000, 2000])
    bad = client.map("math.primes_below", [-5])
    long = client.map("math.primes_below", [5_000_000] * 200)
    client.cancel(long.id)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 300
    while len(statuses) < 3:
        assert time.monotonic() < deadline, statuses
        for name, task in {"ok": ok, "bad": bad, "cancelled": long}.items():
            status = client.get(task.id).status.value
            if status in TERMINAL:
                statuses[name] = status
        time.sleep(0.5)
    return statuses


def _inference(cluster: dict[str, Any]) -> None:
    """Streamed chat completions (time to first token, inter-token latency, tokens), and a
    prompt longer than the model's context, which the engine refuses."""
    llm = openai.OpenAI(base_url=f"{cluster['gateway']}/v1", api_key=cluster["token"],
                        max_retries=0, timeout=120)  # fmt: skip
    for i in range(3):
        stream = llm.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"count to {i + 5}"}],
            max_tokens=12, stream=True,
        )  # fmt: skip
        assert [c for c in stream if c.choices and c.choices[0].delta.content]
    with pytest.raises(openai.BadRequestError):
        llm.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "measured " * 3000}], max_tokens=4
        )


def _denied_and_rate_limited(cluster: dict[str, Any]) -> None:
    """A request without a token and one with a forged token (authentication denied), then
    a user of its own reading faster than its bucket refills (20/s in the package's
    platform) until the gateway answers 429."""
    url = cluster["gateway"]
    assert httpx.get(f"{url}/v1/whoami").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.get(f"{url}/v1/whoami", headers=bad).status_code == 401
    flood = prsm(cluster["env"], "token", "--user", "flood").strip()

    async def hammer() -> int:
        headers = {"Authorization": f"Bearer {flood}"}
        limited = 0
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:

            async def worker() -> None:
                nonlocal limited
                for _ in range(250):
                    if limited:
                        return
                    if (await http.get("/v1/whoami")).status_code == 429:
                        limited += 1

            await asyncio.gather(*(worker() for _ in range(24)))
        return limited

    assert asyncio.run(hammer()), "no request of the flooding user was rate-limited"


def _rollout(client: PrsmClient) -> None:
    """A rollout to a new version: the controller holds it (the version is not serving yet),
    then the user aborts it (its version is removed). Meanwhile the model list is read, so
    that the gateway reloads its registry copy and exports the rollout's traffic shares."""
    rollout = client.start_rollout(MODEL, "v2", policy={"evaluation_interval_s": 1.0})
    started = time.monotonic()
    while not client.rollout(rollout.id).history or time.monotonic() < started + 3:
        assert time.monotonic() < started + 120, "the controller made no decision"
        client.models()
        time.sleep(0.5)
    assert client.abort_rollout(rollout.id).status.value == "ABORTED"


def _query(prometheus: str, expr: str) -> list[Any]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


def test_every_panel_has_series_and_every_alert_rule_evaluates(
    cluster: dict[str, Any], prometheus: str
) -> None:
    client = PrsmClient(cluster["gateway"], cluster["token"], timeout=120)
    try:
        statuses = _tasks(client)
        assert statuses == {"ok": "SUCCEEDED", "bad": "FAILED", "cancelled": "CANCELLED"}
        _inference(cluster)
        _denied_and_rate_limited(cluster)
        _rollout(client)
    finally:
        client.close()
    # Ray's processes report their metrics to the node's agent every few seconds; wait for
    # every panel's query to have its series (or say which have none).
    queries = panel_queries("10m")
    missing = queries
    deadline = time.monotonic() + 180
    while missing and time.monotonic() < deadline:
        missing = [(title, expr) for title, expr in missing if not _query(prometheus, expr)]
        time.sleep(2)
    assert not missing, "panels without series:\n" + "\n".join(f"{t}: {e}" for t, e in missing)
    # The alert rules, loaded from the configuration `prsm up` wrote: every one evaluated
    # (health leaves "unknown" after its group's first round), none with an error.
    deadline = time.monotonic() + 60
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(1)
    names = {r["name"] for r in rules}
    assert {"PrsmHighErrorRate", "PrsmTimeToFirstTokenHigh", "PrsmQueueStuck",
            "PrsmRolloutRolledBack", "PrsmNotReady"} <= names  # fmt: skip
    failing = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not failing, failing
