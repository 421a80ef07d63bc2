"""Canary rollouts through the gateway (in-process, both stores) with provider models served
by the local OpenAI fake: start, traffic split and per-version figures, the controller's
evaluation (promotion to 100 % and retirement of v1; rollback on injected errors), manual
promote and abort, tenant isolation, clear 4xx errors, and a fresh gateway that routes
exactly as the old one did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import openai
import pytest

from prsm.adapters.skill_code import installed
from prsm.bootstrap import backend_factory, utc_now
from prsm.config import Settings
from prsm.domain.identity import Principal
from prsm.domain.rollout_policy import VersionStats
from prsm.runtime.rollout_stats import SampleWindows
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.models import controller_writer
from prsm.service_layer.rollouts import StatsSource, evaluate_due
from tests.fake_providers import FakeProvider, openai_fake, openai_server  # noqa: F401
from tests.integration.test_gateway_api import ALICE, CODEC, EVE, assert_error, auth, token
from tests.integration.test_gateway_models import controller_pass, deploy, llm

# Evaluate on every controller pass, judge on 10 requests, no minimum window.
# Latency is judged loosely here (a local fake's p95 is noise); the e2e tests judge it.
FAST = {
    "evaluation_interval_s": 0.001, "min_window_s": 0, "min_samples": 10,
    "max_latency_ratio": 100,
}  # fmt: skip
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def stats_source(windows: SampleWindows) -> StatsSource:
    async def stats(tenant: str, model: str, version: str, since: datetime) -> VersionStats:
        return windows.stats(tenant, model, version, since.timestamp())

    return stats


class Gateway:
    def __init__(self, http: httpx.AsyncClient, store: Any, windows: SampleWindows) -> None:
        self.http, self.store, self.windows = http, store, windows

    async def evaluate(self) -> list[Any]:
        """One pass of the rollout controller (and the model controller after it)."""
        writer = controller_writer(self.store, utc_now)
        decided = await evaluate_due(writer, stats_source(self.windows))
        await controller_pass(self.store)
        return decided


def make_deps(store: Any, windows: SampleWindows, settings: Settings) -> GatewayDeps:
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        models=ModelCatalog(store, backend_factory(settings), max_age_s=0.0),
    )
    deps.record_call = lambda call: windows.add([call])

    async def traffic(t: str, m: str, v: str, window_s: float, caller: str | None) -> Any:
        return windows.traffic(t, m, v, window_s, caller)

    deps.traffic = traffic
    deps.version_stats = stats_source(windows)
    return deps


@pytest.fixture
async def gw(
    store: Any,
    openai_fake: FakeProvider,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("OPENAI_API_KEY", openai_fake.api_key)
    settings = Settings(openai_base_url=openai_fake.base_url, inference_timeout_s=2.0)
    windows = SampleWindows()
    transport = httpx.ASGITransport(app=create_app(make_deps(store, windows, settings)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        assert (await deploy(http, name="gpt", version="v1", framework="openai")).is_success
        await controller_pass(store)
        yield Gateway(http, store, windows)


async def start(gw: Gateway, **policy: Any) -> dict[str, Any]:
    body = {"model": "gpt", "version": "v2", "policy": FAST | policy}
    response = await gw.http.post("/v1/rollouts", json=body, headers=ALICE)
    assert response.status_code == 202, response.text
    await controller_pass(gw.store)  # v2 (a provider model) is ready at once
    return dict(response.json())


async def traffic(gw: Gateway, n: int) -> dict[str, int]:
    """Send ``n`` chat requests; count the answers per outcome."""
    client = llm(gw.http)
    outcomes: dict[str, int] = {}
    for _ in range(n):
        try:
            await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "hi"}]
            )
            key = "ok"
        except openai.APIStatusError as exc:
            key = str(exc.status_code)
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


async def rollout(gw: Gateway, rollout_id: str) -> dict[str, Any]:
    response = await gw.http.get(f"/v1/rollouts/{rollout_id}", headers=ALICE)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def status_of(gw: Gateway, version: str) -> str:
    response = await gw.http.get(f"/v1/deployments/gpt/{version}", headers=ALICE)
    return str(response.json().get("status", response.status_code))


async def test_a_healthy_version_is_promoted_step_by_step_and_v1_retired(gw: Gateway) -> None:
    started = await start(gw, initial_percent=25)
    assert (started["status"], started["traffic"]) == ("IN_PROGRESS", {"v1": 75.0, "v2": 25.0})
    assert await status_of(gw, "v2") == "READY"
    seen = []
    while (current := await rollout(gw, started["id"]))["status"] == "IN_PROGRESS":
        assert await traffic(gw, 100) == {"ok": 100}
        live = await rollout(gw, started["id"])
        counts = {v: s["requests"] for v, s in live["window"].items()}
        assert sum(counts.values()) == 100 and counts["v2"] >= 1
        await gw.evaluate()
        seen.append((await rollout(gw, started["id"]))["percent"])
    assert seen == [50.0, 100.0]
    assert current["status"] == "COMPLETED" and current["traffic"] == {"v2": 100.0}
    assert [d["decision"] for d in current["history"]] == ["RolloutAdvanced", "RolloutCompleted"]
    assert current["history"][0]["figures"]["candidate"]["requests"] >= 10
    assert await status_of(gw, "v1") == "404"  # retired and removed
    assert (await gw.http.get("/metrics")).text.count("prsm_rollout_traffic_percent{") >= 2


async def test_a_version_with_injected_errors_is_rolled_back_and_removed(gw: Gateway) -> None:
    started = await start(gw, initial_percent=50)
    faults = {"error_rate": 1.0, "latency_ms": 0}
    put = await gw.http.put("/v1/deployments/gpt/v2/faults", json=faults, headers=ALICE)
    assert put.status_code == 200, put.text
    outcomes = await traffic(gw, 60)
    assert outcomes["503"] >= 10 and outcomes["ok"] >= 10
    [decided] = await gw.evaluate()
    assert decided.status.value == "ROLLED_BACK"
    after = await rollout(gw, started["id"])
    assert after["traffic"] == {"v1": 100.0}
    assert "success rate" in after["history"][-1]["reason"]
    assert await status_of(gw, "v2") == "404"
    assert await traffic(gw, 20) == {"ok": 20}  # all back on v1


async def test_the_split_holds_within_5_points_over_2000_requests(gw: Gateway) -> None:
    """At 30 %: 2,000 requests of one user (weighted), then one request from each of 2,000
    users (sticky: each user's version drawn from their id). The version of every request
    is as the router sent it (the rollout's live window)."""
    for sticky in (False, True):
        started = await start(gw, initial_percent=30, sticky=sticky, min_samples=10**6)
        if sticky:
            users = [auth(token(f"user{i}")) for i in range(2000)]
            sent = [await gw.http.post("/v1/chat/completions", json=CHAT, headers=u) for u in users]
            assert {r.status_code for r in sent} == {200}
        else:
            assert await traffic(gw, 2000) == {"ok": 2000}
        window = (await rollout(gw, started["id"]))["window"]
        counts = {v: s["requests"] for v, s in window.items()}
        assert sum(counts.values()) == 2000, counts
        assert abs(counts["v2"] / 2000 - 0.30) <= 0.05, (sticky, counts)
        aborted = await gw.http.post(f"/v1/rollouts/{started['id']}/abort", headers=ALICE)
        assert aborted.status_code == 200, aborted.text
        await controller_pass(gw.store)  # v2 removed: the next rollout deploys it again


async def test_a_versions_traffic_counts_its_calls_streamed_or_not(gw: Gateway) -> None:
    client = llm(gw.http)
    for _ in range(3):
        await client.chat.completions.create(**CHAT)
    stream = await client.chat.completions.create(**CHAT, stream=True)
    assert [c async for c in stream]
    answer = await gw.http.get("/v1/deployments/gpt/v1/traffic?window_s=60", headers=ALICE)
    figures = answer.json()
    assert (figures["requests"], figures["errors"], figures["window_s"]) == (4, 0, 60), figures
    assert figures["ttft_p50_ms"] > 0 and figures["tokens_per_s"] > 0, figures
    assert_error(await gw.http.get("/v1/deployments/gpt/v1/traffic", headers=EVE), 404,
                 "not_found")  # fmt: skip
    bad = await gw.http.get("/v1/deployments/gpt/v1/traffic?window_s=0", headers=ALICE)
    assert bad.status_code == 422


async def test_promote_abort_and_a_fresh_gateway_routes_the_same(
    gw: Gateway,
    store: Any,
    openai_fake: FakeProvider,  # noqa: F811
) -> None:
    started = await start(gw, initial_percent=30, sticky=True)
    windows = SampleWindows()
    settings = Settings(openai_base_url=openai_fake.base_url)
    fresh = make_deps(store, windows, settings)  # as if every replica had been replaced
    assert fresh.models is not None
    registry = await fresh.models.registry()
    alice = Principal("alice", "acme")
    assert registry.route(alice, "gpt").weights == ((("v1", 0.7), ("v2", 0.3)))
    aborted = await gw.http.post(f"/v1/rollouts/{started['id']}/abort", headers=ALICE)
    assert (aborted.status_code, aborted.json()["status"]) == (200, "ABORTED")
    again = await gw.http.post(f"/v1/rollouts/{started['id']}/promote", headers=ALICE)
    assert_error(again, 409, "conflict")
    await controller_pass(store)
    second = await start(gw)  # v2 again, after the abort removed it
    promoted = await gw.http.post(f"/v1/rollouts/{second['id']}/promote", headers=ALICE)
    assert promoted.json()["traffic"] == {"v2": 100.0}
    await controller_pass(store)
    listed = (await gw.http.get("/v1/rollouts?model=gpt", headers=ALICE)).json()["rollouts"]
    assert [r["status"] for r in listed] == ["COMPLETED", "ABORTED"]


async def test_bad_requests_get_clear_4xx_and_tenants_are_isolated(gw: Gateway) -> None:
    post = gw.http.post
    started = await start(gw)
    rid = started["id"]
    assert_error(await post("/v1/rollouts", json={"model": "gpt", "version": "v3"},
                            headers=ALICE), 409, "conflict")  # fmt: skip
    assert_error(await gw.http.delete("/v1/deployments/gpt/v1", headers=ALICE), 409, "conflict")
    assert_error(await post("/v1/rollouts", json={"model": "nope", "version": "v2"},
                            headers=ALICE), 404, "not_found")  # fmt: skip
    bad = {"model": "gpt", "version": "v3", "policy": {"initial_percent": 150}}
    assert_error(await post("/v1/rollouts", json=bad, headers=ALICE), 422, "invalid_request")
    same = {"model": "gpt", "version": "v1"}
    assert (await post("/v1/rollouts", json=same, headers=EVE)).status_code == 404
    for response in (
        await gw.http.get(f"/v1/rollouts/{rid}", headers=EVE),
        await post(f"/v1/rollouts/{rid}/abort", headers=EVE),
        await post(f"/v1/rollouts/{rid}/promote", headers=EVE),
    ):
        assert_error(response, 404, "not_found")
    assert (await gw.http.get("/v1/rollouts", headers=EVE)).json()["rollouts"] == []
    assert (await rollout(gw, rid))["status"] == "IN_PROGRESS"
