"""API keys through the gateway (in-process, both stores): created and shown once, stored
hashed, scoped within their owner's scopes, listed without secrets, revoked at once on every
replica, other tenants' keys invisible."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_gateway_api import ADMIN, ALICE, CODEC, EVE, auth
from tests.support import DEMO_TASK, register_agent


def gateway(store: Any) -> httpx.AsyncClient:
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


@pytest.fixture
async def replicas(store: Any) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    await register_agent(store)
    async with gateway(store) as one, gateway(store) as two:
        yield one, two


async def test_a_scoped_key_works_within_its_scopes_and_is_revoked_everywhere_at_once(
    replicas: tuple[httpx.AsyncClient, httpx.AsyncClient], store: Any
) -> None:
    one, two = replicas
    created = await one.post(
        "/v1/keys", json={"name": "reader", "scopes": ["tasks:read"]}, headers=ALICE
    )
    assert created.status_code == 201, created.text
    body = created.json()
    raw, key_id = body["key"], body["id"]
    assert raw.startswith(f"prsm_{key_id}_") and body["scopes"] == ["tasks:read"]
    stored = [r.event for r in await store.read_stream(f"apikey-{key_id}")]
    assert raw not in repr(stored) and raw.split("_", 2)[2] not in repr(stored)  # hashed only

    key = auth(raw)
    assert (await two.get("/v1/tasks", headers=key)).status_code == 200
    refused = await two.post("/v1/tasks", json=DEMO_TASK, headers=key)
    assert refused.status_code == 403 and "limited" in refused.json()["error"]["message"]

    listed = (await one.get("/v1/keys", headers=ALICE)).json()["keys"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    assert (await one.get("/v1/keys", headers=EVE)).json()["keys"] == []
    assert (await one.delete(f"/v1/keys/{key_id}", headers=EVE)).status_code == 404

    revoked = await one.delete(f"/v1/keys/{key_id}", headers=ALICE)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    gone = await two.get("/v1/tasks", headers=key)  # the other replica, the very next request
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]
    audit = (await two.get("/v1/audit", params={"allowed": "false"}, headers=ADMIN)).json()
    [entry] = [e for e in audit["entries"]
               if e["correlation_id"] == gone.headers["x-correlation-id"]]  # fmt: skip
    assert entry["stage"] == "authentication" and raw not in str(entry)


async def test_keys_inherit_their_owner_and_never_exceed_them(
    replicas: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    one, _ = replicas
    full = (await one.post("/v1/keys", json={"name": "all"}, headers=ALICE)).json()
    me = (await one.get("/v1/whoami", headers=auth(full["key"]))).json()
    assert (me["user_id"], me["tenant_id"], me["roles"]) == ("alice", "acme", ["user"])
    assert (await one.get("/v1/audit", headers=auth(full["key"]))).status_code == 403
    for body, reason in (
        ({"name": "x", "scopes": ["audit:read"]}, "beyond your own"),
        ({"name": "x", "scopes": ["root"]}, "unknown scopes"),
    ):
        response = await one.post("/v1/keys", json=body, headers=ALICE)
        assert response.status_code == 422 and reason in response.json()["error"]["message"]
    by_key = await one.post("/v1/keys", json={"name": "x"}, headers=auth(full["key"]))
    assert by_key.status_code == 422
    for raw in ("prsm_short", f"prsm_{full['id']}_{'x' * 43}", "prsm_0123456789abcdef_" + "y" * 43):
        response = await one.get("/v1/tasks", headers=auth(raw))
        assert response.status_code == 401, raw
    assert (await one.post("/v1/keys", json={"name": ""}, headers=ALICE)).status_code == 422
