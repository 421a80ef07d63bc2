"""Deployments and the OpenAI-compatible API through the gateway (in-process, both stores),
with provider models served by local fakes of OpenAI and Anthropic, called with the
official ``openai`` client. The model controller's decisions are applied as it applies them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from prsm.adapters.skill_code import installed
from prsm.bootstrap import backend_factory, utc_now
from prsm.cli import models as cli_models
from prsm.client import PrsmClient
from prsm.config import Settings
from prsm.runtime.model_controller import provider_changes
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.models import change_registry, controller_writer, load_registry
from tests.fake_providers import (  # noqa: F401 - fixtures
    FakeProvider,
    anthropic_fake,
    anthropic_server,
    openai_fake,
    openai_server,
)
from tests.integration.test_gateway_api import ADMIN, ALICE, CODEC, EVE, assert_error, token

KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}


@pytest.fixture
async def gateway(
    store: Any,
    openai_fake: FakeProvider,  # noqa: F811
    anthropic_fake: FakeProvider,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    monkeypatch.setenv("OPENAI_API_KEY", openai_fake.api_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_fake.api_key)
    settings = Settings(
        openai_base_url=openai_fake.base_url,
        anthropic_base_url=anthropic_fake.base_url,
        inference_timeout_s=1.0,
    )
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        models=ModelCatalog(store, backend_factory(settings), max_age_s=0.0),
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client, store


async def controller_pass(store: Any) -> None:
    """What the model controller does for provider models on its next pass."""
    registry = await load_registry(store)
    changes = [c for d in registry.deployments.values() for c in provider_changes(d, utc_now())]

    def apply(r: Any) -> None:
        for change in changes:
            change(r)

    await change_registry(controller_writer(store, utc_now), apply)


def llm(http: httpx.AsyncClient, tok: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://gateway/v1",
        api_key=tok or token("alice"),
        http_client=http,
        max_retries=0,
    )


async def deploy(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post("/v1/deployments", json=body, headers=ALICE)


async def test_a_provider_model_is_deployed_served_and_undeployed(
    gateway: tuple[httpx.AsyncClient, Any],
    openai_fake: FakeProvider,  # noqa: F811
) -> None:
    http, store = gateway
    created = await deploy(http, name="gpt", version="v1", framework="openai", source="gpt-4o")
    assert created.status_code == 202, created.text
    assert (created.json()["status"], created.json()["id"]) == ("DEPLOYING", "gpt:v1")
    with pytest.raises(openai.NotFoundError):  # not ready yet
        await llm(http).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}]
        )

    await controller_pass(store)
    assert (await http.get("/v1/deployments/gpt/v1", headers=ALICE)).json()["status"] == "READY"
    client = llm(http)
    assert [m.id for m in (await client.models.list()).data] == ["gpt"]

    chat = await client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi there"}]
    )
    assert chat.choices[0].message.content == "Hello from OpenAI. You said: hi there"
    assert openai_fake.last.body["model"] == "gpt-4o"  # the provider's name, not PRSM's
    assert openai_fake.key_of(openai_fake.last.headers) == openai_fake.api_key

    stream = await client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces).strip() == "Hello from OpenAI. You said: stream"

    text = await client.completions.create(model="gpt", prompt="complete me")
    assert "complete me" in text.choices[0].text

    gone = await http.delete("/v1/deployments/gpt/v1", headers=ALICE)
    assert (gone.status_code, gone.json()["status"]) == (202, "UNDEPLOYING")
    await controller_pass(store)
    assert_error(await http.get("/v1/deployments/gpt/v1", headers=ALICE), 404, "not_found")
    assert (await http.get("/v1/deployments", headers=ALICE)).json()["deployments"] == []
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}]
        )


async def test_an_anthropic_model_answers_through_the_openai_api(
    gateway: tuple[httpx.AsyncClient, Any],
    anthropic_fake: FakeProvider,  # noqa: F811
) -> None:
    http, store = gateway
    assert (
        await deploy(http, name="claude", version="v1", framework="anthropic")
    ).status_code == 202
    await controller_pass(store)
    client = llm(http)
    chat = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hey"}],
    )
    assert chat.choices[0].message.content == "Hello from Anthropic. You said: hey"
    assert anthropic_fake.last.body["system"] == "be brief"
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    stream = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_provider_errors_become_429_502_504(
    gateway: tuple[httpx.AsyncClient, Any],
    openai_fake: FakeProvider,  # noqa: F811
) -> None:
    http, store = gateway
    await deploy(http, name="gpt", version="v1", framework="openai")
    await controller_pass(store)
    client = llm(http)
    ask = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}

    openai_fake.fail_status = 429
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert limited.value.response.headers["retry-after"] == "7"

    openai_fake.fail_status = 401
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert refused.value.status_code == 502
    assert "OPENAI_API_KEY" in refused.value.message
    assert openai_fake.api_key not in refused.value.response.text

    openai_fake.fail_status = None
    openai_fake.delay_s = 3.0  # beyond inference_timeout_s
    with pytest.raises(openai.APIStatusError) as slow:
        await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert slow.value.status_code == 504
    text = (await http.get("/metrics")).text
    assert 'outcome="upstream_timeout"' in text and 'outcome="rate_limited"' in text


async def test_deployment_requests_are_validated_and_tenant_scoped(
    gateway: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, store = gateway
    bad = await deploy(http, name="m", version="v1", source="/m", strategy="DISTRIBUTED")
    assert_error(bad, 422, "invalid_request")
    assert "tensor_parallel" in bad.json()["error"]["message"]
    assert_error(
        await deploy(http, name="bad name", version="v1", source="/m"), 422, "invalid_request"
    )
    assert_error(await deploy(http, name="m", version="v1"), 422, "invalid_request")  # no source
    shared = await deploy(http, name="m", version="v1", source="/m", shared=True)
    assert_error(shared, 403, "forbidden")

    assert (await deploy(http, name="m", version="v1", source="/m")).status_code == 202
    assert_error(await deploy(http, name="m", version="v1", source="/m"), 409, "conflict")
    # Another tenant neither sees it nor can remove it; it may use the same name itself.
    assert_error(await http.get("/v1/deployments/m/v1", headers=EVE), 404, "not_found")
    assert_error(await http.delete("/v1/deployments/m/v1", headers=EVE), 404, "not_found")
    assert (await http.get("/v1/deployments", headers=EVE)).json()["deployments"] == []
    mine = await http.post(
        "/v1/deployments", headers=EVE, json={"name": "m", "version": "v1", "source": "/x"}
    )
    assert mine.status_code == 202
    assert len((await http.get("/v1/deployments", headers=ALICE)).json()["deployments"]) == 1
    # An admin may share a model with every tenant.
    pub = await http.post(
        "/v1/deployments",
        headers=ADMIN,
        json={"name": "pub", "version": "v1", "source": "/p", "shared": True},
    )
    assert (pub.status_code, pub.json()["shared"]) == (202, True)
    assert {
        d["id"] for d in (await http.get("/v1/deployments", headers=EVE)).json()["deployments"]
    } == {
        "m:v1",
        "pub:v1",
    }

    # A provider model whose key the platform lacks fails with the reason.
    monkeypatch.delenv("OPENAI_API_KEY")
    await deploy(http, name="gpt", version="v1", framework="openai")
    await controller_pass(store)
    failed = (await http.get("/v1/deployments/gpt/v1", headers=ALICE)).json()
    assert (failed["status"], failed["detail"]) == (
        "FAILED",
        "OPENAI_API_KEY is not set in the platform's environment",
    )


async def test_shared_models_are_listed_marked_and_managed_by_admins_only(
    gateway: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, store = gateway
    shared = {"name": "pub", "version": "v1", "framework": "openai", "shared": True}
    assert (await http.post("/v1/deployments", json=shared, headers=ADMIN)).status_code == 202
    assert (await deploy(http, name="mine", version="v1", framework="openai")).status_code == 202
    theirs = {"name": "theirs", "version": "v1", "framework": "openai"}
    assert (await http.post("/v1/deployments", json=theirs, headers=EVE)).status_code == 202
    await controller_pass(store)

    # Alice sees her tenant's model and the shared one, marked; not Eve's.
    listed = (await http.get("/v1/deployments", headers=ALICE)).json()
    assert {d["id"]: d["shared"] for d in listed["deployments"]} == {
        "pub:v1": True,
        "mine:v1": False,
    }
    one = (await http.get("/v1/deployments/pub/v1", headers=ALICE)).json()
    assert (one["shared"], one["status"]) == (True, "READY")
    # The models she can call are the same ones.
    assert {m.id for m in (await llm(http).models.list()).data} == {"pub", "mine"}
    assert {d["id"] for d in (await http.get("/v1/deployments", headers=EVE)).json()[
        "deployments"
    ]} == {"pub:v1", "theirs:v1"}  # fmt: skip

    # Managing a shared model is for admins: a clear 403, and the model is left as it was.
    assert_error(await http.delete("/v1/deployments/pub/v1", headers=ALICE), 403, "forbidden")
    faults = await http.put("/v1/deployments/pub/v1/faults", json={"error_rate": 1}, headers=ALICE)
    assert_error(faults, 403, "forbidden")
    rollout = await http.post("/v1/rollouts", json={"model": "pub", "version": "v2"}, headers=ALICE)
    assert_error(rollout, 403, "forbidden")
    after = (await http.get("/v1/deployments/pub/v1", headers=ADMIN)).json()
    assert (after["status"], after["faults"]["error_rate"]) == ("READY", 0.0)
    gone = await http.delete("/v1/deployments/pub/v1", headers=ADMIN)
    assert (gone.status_code, gone.json()["status"]) == (202, "UNDEPLOYING")

    # `prsm models list` marks the shared row, from the gateway's answer above.
    def answer(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/deployments")
        return httpx.Response(200, json=listed)

    sdk = PrsmClient("http://gateway", "token", transport=httpx.MockTransport(answer))
    monkeypatch.setattr(cli_models, "client", lambda: sdk)
    shown = CliRunner().invoke(cli_models.models_app, ["list"])
    assert shown.exit_code == 0, shown.output
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.output.splitlines()]
    assert {r[0]: r[1] for r in rows if r} == {"pub:v1": "yes", "mine:v1": ""}


async def test_openai_routes_need_a_token_and_a_known_model(
    gateway: tuple[httpx.AsyncClient, Any],
) -> None:
    http, _ = gateway
    body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    assert_error(await http.post("/v1/chat/completions", json=body), 401, "unauthenticated")
    unknown = await http.post("/v1/chat/completions", json=body, headers=ALICE)
    assert_error(unknown, 404, "not_found")
    assert unknown.json()["error"]["type"] == "not_found_error"  # OpenAI's error shape
    assert_error(
        await http.post("/v1/chat/completions", json={"model": "x"}, headers=ALICE),
        422,
        "invalid_request",
    )
    assert_error(await http.get("/v1/models/nope", headers=ALICE), 404, "not_found")


async def test_injected_faults_fail_or_slow_a_version_until_removed(
    gateway: tuple[httpx.AsyncClient, Any],
) -> None:
    http, store = gateway
    await deploy(http, name="gpt", version="v1", framework="openai")
    await controller_pass(store)
    client = llm(http)
    ask = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    faults = "/v1/deployments/gpt/v1/faults"

    failing = await http.put(faults, json={"error_rate": 1.0}, headers=ALICE)
    assert failing.json()["faults"] == {"error_rate": 1.0, "latency_ms": 0}
    with pytest.raises(openai.APIStatusError) as injected:
        await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert injected.value.status_code == 503
    assert injected.value.body["code"] == "injected_fault"  # type: ignore[index]

    await http.put(faults, json={"latency_ms": 300}, headers=ALICE)
    started = time.perf_counter()
    await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert time.perf_counter() - started >= 0.3

    await http.put(faults, json={}, headers=ALICE)
    started = time.perf_counter()
    await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert time.perf_counter() - started < 0.3
    assert 'outcome="injected_fault"' in (await http.get("/metrics")).text

    assert_error(
        await http.put(faults, json={"error_rate": 2}, headers=ALICE), 422, "invalid_request"
    )
    assert_error(await http.put(faults, json={"error_rate": 0.5}, headers=EVE), 404, "not_found")
