"""The gateway's answer to the edge (``routes_edge``), in-process on a real store: a vLLM
version the caller may call gets a replica's address and a grant that says what the gateway
decided; every other request (no or a bad token, another tenant's model, an unknown one, a
provider model, a fault drill, a body that is not a request) is left
to the gateway's own route (204), and only a granted request is audited and counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from prsm.adapters.inference import grants
from prsm.adapters.inference.vllm_serve import VllmServeBackend
from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.domain.model_registry import Deployment
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.serve.model_catalog import ModelCatalog
from prsm.serve.routes_edge import Routing
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.models import change_registry, controller_writer, load_registry
from tests.integration.test_gateway_api import ALICE, CODEC, EVE

KEY = grants.grant_key(b"secret")
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


class Replica(VllmServeBackend):
    """A vLLM version's backend whose replica answers at a fixed address (no Serve here)."""

    def __init__(self, app: str) -> None:  # no Serve handle
        self.app = app

    async def direct_address(self) -> str:
        return "10.1.2.3:40000"


def factory(d: Deployment) -> Any:
    if d.spec.is_provider:
        return object()  # any backend but a vLLM version's
    return Replica(f"app-of-{d.spec.name}-{d.spec.version}")


@pytest.fixture
async def gateway(store: Any) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    limited: list[str] = []

    async def rate_limit(principal: Any, kind: str) -> None:
        limited.append(principal.user_id)

    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store, views=store, tokens=VerifiedTokens(CODEC),
        models=ModelCatalog(store, factory, max_age_s=0.0), grant_key=KEY,
        rate_limit=rate_limit,
    )  # fmt: skip
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)),
                            base_url="http://gateway")  # fmt: skip
    edge = httpx.AsyncClient(transport=httpx.ASGITransport(app=Routing(deps)),
                             base_url="http://routing")  # fmt: skip
    async with api, edge:
        for body in ({"name": "tiny", "version": "v1", "source": "/models/tiny"},
                     {"name": "scaled", "version": "v1", "source": "/models/tiny",
                      "strategy": "REPLICATED", "min_replicas": 0, "max_replicas": 2},
                     {"name": "gpt", "version": "v1", "framework": "openai",
                      "source": "gpt-4o"}):  # fmt: skip
            assert (await api.post("/v1/deployments", json=body, headers=ALICE)).is_success
        registry = await load_registry(store)

        def ready(r: Any) -> None:
            for d in registry.deployments.values():
                r.deployed(d.key, utc_now())

        await change_registry(controller_writer(store, utc_now), ready)
        limited.clear()  # the deployments above took theirs
        edge.limited = limited  # type: ignore[attr-defined]
        yield api, edge


async def ask(edge: httpx.AsyncClient, headers: dict[str, str], body: Any = CHAT,
              path: str = "/route/v1/chat/completions") -> httpx.Response:  # fmt: skip
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await edge.post(path, content=content, headers={**headers, "x-request-id": "r-9"})


async def test_a_caller_gets_the_versions_replica_and_a_grant_of_what_was_decided(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, edge = gateway
    answer = await ask(edge, ALICE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["dst"] == "10.1.2.3:40000"
    grant = grants.verify(KEY, answer.json()["grant"], "app-of-tiny-v1")
    assert (grant.model, grant.version, grant.request_id) == ("tiny", "v1", "r-9")
    assert grant.caller_tenant == grant.tenant and not grant.in_rollout
    assert edge.limited == ["alice"]  # type: ignore[attr-defined]
    completions = {"model": "tiny", "prompt": "once"}
    assert (await ask(edge, ALICE, completions, "/route/v1/completions")).status_code == 200
    scaled = await ask(edge, ALICE, {**CHAT, "model": "scaled"})  # Serve counts it too
    assert grants.verify(KEY, scaled.json()["grant"], "app-of-scaled-v1").model == "scaled"


@pytest.mark.parametrize(
    ("headers", "body", "path"),
    [
        ({}, CHAT, "/route/v1/chat/completions"),
        ({"Authorization": "Bearer forged"}, CHAT, "/route/v1/chat/completions"),
        ("eve", CHAT, "/route/v1/chat/completions"),  # another tenant: not her model
        ("alice", {**CHAT, "model": "unknown"}, "/route/v1/chat/completions"),
        ("alice", {**CHAT, "model": "gpt"}, "/route/v1/chat/completions"),  # a provider
        ("alice", b"{not json", "/route/v1/chat/completions"),
        ("alice", {"model": "tiny", "messages": []}, "/route/v1/chat/completions"),
        ("alice", CHAT, "/route/v1/embeddings"),
    ],
)
async def test_everything_else_is_left_to_the_gateway_and_costs_no_rate_limit_token(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient], headers: Any, body: Any, path: str
) -> None:
    _, edge = gateway
    named = {"alice": ALICE, "eve": EVE}
    answer = await ask(edge, named[headers] if isinstance(headers, str) else headers, body, path)
    assert (answer.status_code, answer.content) == (204, b"")
    assert edge.limited == []  # type: ignore[attr-defined]


async def test_the_routing_port_knows_no_other_route(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, edge = gateway
    assert (await ask(edge, ALICE, CHAT, "/v1/chat/completions")).status_code == 404
    assert (await edge.get("/route/v1/chat/completions", headers=ALICE)).status_code == 404
    assert edge.limited == []  # type: ignore[attr-defined]


async def test_a_version_with_injected_faults_is_left_to_the_gateway(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    api, edge = gateway
    drill = await api.put("/v1/deployments/tiny/v1/faults", json={"error_rate": 0.5},
                          headers=ALICE)  # fmt: skip
    assert drill.is_success, drill.text
    assert (await ask(edge, ALICE)).status_code == 204
