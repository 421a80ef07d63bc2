"""Authentication, authorisation and audit through the gateway (in-process, both stores): the
auth matrix — each refusal the right status and an audit entry — RS256 tokens of an
identity provider beside local HS256 ones, scopes per role, cross-tenant attempts refused as
404, the audit log for admins, and no route without a scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter

from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.security.tokens import PublicKeys, TokenCodec, VerifiedTokens
from prsm.serve import app as app_module
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_gateway_api import ADMIN, ALICE, EVE, auth, token
from tests.support import DEMO_TASK, register_agent
from tests.unit.test_tokens import rsa_pair

SECRET = b"test-secret-test-secret-test-secret"
NOW = datetime.now(UTC)
PRIVATE, PUBLIC = rsa_pair()


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "alice", "tenant": "acme", "roles": ["user"], "iss": "prsm", "aud": "prsm",
        "nbf": int(NOW.timestamp()), "exp": int((NOW + timedelta(hours=1)).timestamp()),
    }  # fmt: skip
    return {k: v for k, v in (base | overrides).items() if v is not None}


def hs(**overrides: object) -> str:
    return jwt.encode(claims(**overrides), SECRET)


@pytest.fixture
async def gw(store: Any, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayDeps]]:
    await register_agent(store)
    (tmp_path / "idp.pem").write_text(PUBLIC)
    codec = TokenCodec(SECRET, "prsm", "prsm", PublicKeys(tmp_path / "idp.pem", jwks=False))
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(codec),
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client, deps


def confused() -> str:
    """HS256 signed with the identity provider's public key as the HMAC secret."""
    import hashlib
    import hmac
    import json
    from base64 import urlsafe_b64encode

    def b64(data: bytes) -> str:
        return urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(PUBLIC.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


MATRIX = [
    ("no token", {}, 401, "authentication", "bearer token is required"),
    ("malformed", auth("not-a-jwt"), 401, "authentication", "malformed"),
    ("bad signature", auth(jwt.encode(claims(), b"x" * 32)), 401, "authentication", "ignature"),
    ("expired", auth(hs(exp=int((NOW - timedelta(hours=1)).timestamp()))), 401,
     "authentication", "expired"),
    ("not yet valid", auth(hs(nbf=int((NOW + timedelta(hours=1)).timestamp()))), 401,
     "authentication", "not yet valid"),
    ("wrong issuer", auth(hs(iss="evil-idp")), 401, "authentication", "issuer"),
    ("wrong audience", auth(hs(aud="other-api")), 401, "authentication", "udience"),
    ("alg none", auth(jwt.encode(claims(), None, algorithm="none")), 401, "authentication",
     "'none' is not accepted"),
    ("HS/RS confusion", auth(confused()), 401, "authentication", "ignature"),
    ("insufficient scope", auth(token("val", roles=("viewer",))), 403, "authorization",
     "lack scope tasks:write"),
    ("narrowed credential", auth(hs(scope="inference")), 403, "authorization",
     "limited to other scopes"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "headers", "status", "stage", "reason"), MATRIX,
                         ids=[m[0] for m in MATRIX])  # fmt: skip
async def test_the_auth_matrix_refuses_and_audits_each_case(
    gw: tuple[httpx.AsyncClient, GatewayDeps],
    case: str,
    headers: dict[str, str],
    status: int,
    stage: str,
    reason: str,
) -> None:
    http, _ = gw
    response = await http.post("/v1/tasks", json=DEMO_TASK, headers=headers)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]["message"]
    audit = await http.get("/v1/audit", params={"allowed": "false"}, headers=ADMIN)
    [entry] = [e for e in audit.json()["entries"]
               if e["correlation_id"] == response.headers["x-correlation-id"]]  # fmt: skip
    assert (entry["stage"], entry["route"], entry["method"], entry["scope"]) == (
        stage, "/v1/tasks", "POST", "tasks:write",
    )  # fmt: skip
    assert reason in entry["reason"] and entry["client"]
    assert "Bearer" not in str(entry) and SECRET.decode() not in str(entry)


async def test_rs256_tokens_of_the_identity_provider_are_accepted(
    gw: tuple[httpx.AsyncClient, GatewayDeps],
) -> None:
    http, _ = gw
    rs = jwt.encode(claims(sub="carol"), PRIVATE, algorithm="RS256")
    me = await http.get("/v1/whoami", headers=auth(rs))
    assert (me.status_code, me.json()["user_id"]) == (200, "carol")


async def test_allowed_requests_are_audited_and_only_admins_read_the_log(
    gw: tuple[httpx.AsyncClient, GatewayDeps],
) -> None:
    http, _ = gw
    submitted = await http.post("/v1/tasks", json=DEMO_TASK, headers=ALICE)
    assert submitted.status_code == 201
    refused = await http.get("/v1/audit", headers=ALICE)
    assert refused.status_code == 403
    entries = (await http.get("/v1/audit", params={"user_id": "alice"}, headers=ADMIN)).json()
    mine = {e["correlation_id"]: e for e in entries["entries"]}
    allowed = mine[submitted.headers["x-correlation-id"]]
    assert (allowed["allowed"], allowed["tenant_id"], allowed["credential"]) == (
        True, "acme", "token",
    )  # fmt: skip
    denied = mine[refused.headers["x-correlation-id"]]
    assert (denied["allowed"], denied["scope"]) == (False, "audit:read")
    bad = await http.get("/v1/audit", params={"limit": 0}, headers=ADMIN)
    assert bad.status_code == 422


async def test_cross_tenant_read_list_cancel_and_undeploy_are_refused_as_not_found(
    gw: tuple[httpx.AsyncClient, GatewayDeps],
) -> None:
    http, _ = gw
    task = (await http.post("/v1/tasks", json=DEMO_TASK, headers=ALICE)).json()
    assert (await http.get(f"/v1/tasks/{task['id']}", headers=EVE)).status_code == 404
    assert (await http.delete(f"/v1/tasks/{task['id']}", headers=EVE)).status_code == 404
    assert (await http.get("/v1/tasks", headers=EVE)).json()["tasks"] == []
    body = {"name": "gpt", "version": "v1", "framework": "openai"}
    assert (await http.post("/v1/deployments", json=body, headers=ALICE)).status_code == 202
    assert (await http.delete("/v1/deployments/gpt/v1", headers=EVE)).status_code == 404
    assert (await http.get("/v1/deployments/gpt/v1", headers=EVE)).status_code == 404
    assert (await http.get("/v1/deployments", headers=EVE)).json()["deployments"] == []
    faults = {"error_rate": 1.0}
    put = await http.put("/v1/deployments/gpt/v1/faults", json=faults, headers=EVE)
    assert put.status_code == 404


def test_a_route_without_a_scope_is_refused_when_the_gateway_is_built(store: Any) -> None:
    router = APIRouter()

    @router.get("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    original = app_module.routes_audit.router
    app_module.routes_audit.router = router  # type: ignore[attr-defined]
    try:
        deps = GatewayDeps(
            bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
            store=store,
            views=store,
            tokens=VerifiedTokens(TokenCodec(SECRET, "prsm", "prsm")),
        )
        with pytest.raises(RuntimeError, match="/v1/forgotten names no scope"):
            create_app(deps)
    finally:
        app_module.routes_audit.router = original  # type: ignore[attr-defined]


async def test_oversized_headers_are_refused_with_431(
    gw: tuple[httpx.AsyncClient, GatewayDeps],
) -> None:
    http, _ = gw
    response = await http.get("/v1/whoami", headers={**ALICE, "X-Padding": "x" * 20_000})
    assert response.status_code == 431 and response.json()["error"]["code"] == "headers_too_large"
    assert (await http.get("/v1/whoami", headers=ALICE)).status_code == 200
