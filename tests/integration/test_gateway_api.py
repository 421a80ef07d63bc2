"""The gateway's HTTP API in-process (ASGI), on both real stores."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.domain import events as ev
from prsm.domain.events import EventMetadata, NewEvent
from prsm.domain.identity import Principal
from prsm.domain.policy import Scope
from prsm.security.tokens import TokenCodec, VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.ports import StreamWrite
from tests.support import DEMO_TASK, register_agent

CODEC = TokenCodec(b"test-secret-test-secret-test-secret", issuer="prsm", audience="prsm")
MAX_BODY = 64 * 1024


def token(user: str = "alice", tenant: str = "acme", roles: tuple[str, ...] = ("user",)) -> str:
    principal = Principal(user_id=user, tenant_id=tenant, roles=frozenset(roles))
    return CODEC.issue(principal, datetime.now(UTC), timedelta(hours=1))


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


ALICE = auth(token("alice"))
BOB = auth(token("bob"))  # same tenant, another user
EVE = auth(token("eve", tenant="evil"))  # another tenant
ADMIN = auth(token("root", roles=("admin",)))


@pytest.fixture
async def api(store: Any) -> AsyncIterator[httpx.AsyncClient]:
    await register_agent(store)
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        max_body_bytes=MAX_BODY,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["correlation_id"] == response.headers["x-correlation-id"]
    assert "Traceback" not in response.text


async def submit(api: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    response = await api.post("/v1/tasks", json={**DEMO_TASK, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


# -- authentication ------------------------------------------------------------------------


async def test_requests_without_a_valid_token_get_401(api: httpx.AsyncClient) -> None:
    expired = CODEC.issue(
        Principal("alice", "acme"), datetime.now(UTC) - timedelta(hours=2), timedelta(hours=1)
    )
    forged = TokenCodec(b"another-secret-another-secret-xx", "prsm", "prsm").issue(
        Principal("alice", "acme"), datetime.now(UTC), timedelta(hours=1)
    )
    unsigned = jwt.encode(
        {"sub": "alice", "tenant": "acme", "iss": "prsm", "aud": "prsm", "exp": 4102444800},
        key=None,
        algorithm="none",
    )
    for headers in (
        {},
        {"Authorization": "Basic YWxpY2U6cHc="},
        auth("not-a-jwt"),
        auth(expired),
        auth(forged),
        auth(unsigned),
    ):
        response = await api.get("/v1/whoami", headers=headers)
        assert_error(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_whoami_names_the_principal(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/whoami", headers=ADMIN)
    everything = sorted(s.value for s in Scope)  # what an admin may do: the console asks
    assert response.json() == {"user_id": "root", "tenant_id": "acme", "roles": ["admin"],
                               "scopes": everything}  # fmt: skip


# -- tasks ---------------------------------------------------------------------------------


def meta() -> EventMetadata:
    return EventMetadata(occurred_at=datetime.now(UTC), source="test", correlation_id="c")


async def test_a_tasks_subtasks_are_listed_with_their_last_try_and_paged(
    api: httpx.AsyncClient, store: Any
) -> None:
    task = await submit(api, ALICE)
    empty = await api.get(f"/v1/tasks/{task['id']}/subtasks", headers=ALICE)
    assert empty.json() == {"subtasks": [], "total": 0}
    tries = [
        ev.SubtaskFailed(task_id=task["id"], key="0", agent_id="a1", attempt=1, error="boom",
                         final=False, node_id="n1", bundle=0),
        ev.SubtaskCompleted(task_id=task["id"], key="1", agent_id="a1", output=1, seconds=0.5,
                            node_id="n1", bundle=0),
        ev.SubtaskCompleted(task_id=task["id"], key="0", agent_id="a2", output=4, seconds=0.25,
                            node_id="n2", bundle=1),
        ev.SubtaskFailed(task_id=task["id"], key="2", agent_id="a2", attempt=3, error="bad item",
                         final=True, node_id="n2", bundle=1),
    ]  # fmt: skip
    await store.append(
        [StreamWrite(f"run-{task['id']}", None, [NewEvent(e, meta()) for e in tries])]
    )
    listed = (await api.get(f"/v1/tasks/{task['id']}/subtasks", headers=ALICE)).json()
    assert listed["total"] == 3
    assert [(s["key"], s["status"], s["tries"], s["node_id"], s["seconds"], s["error"])
            for s in listed["subtasks"]] == [
        ("0", "succeeded", 2, "n2", 0.25, "boom"),
        ("1", "succeeded", 1, "n1", 0.5, None),
        ("2", "failed", 1, "n2", None, "bad item"),
    ]  # fmt: skip
    page = await api.get(f"/v1/tasks/{task['id']}/subtasks?limit=1&offset=2", headers=ALICE)
    assert [s["key"] for s in page.json()["subtasks"]] == ["2"]
    other = await api.get(f"/v1/tasks/{task['id']}/subtasks", headers=EVE)
    assert_error(other, 404, "not_found")
    bad = await api.get(f"/v1/tasks/{task['id']}/subtasks?limit=0", headers=ALICE)
    assert bad.status_code == 422


async def test_submit_get_list_cancel(api: httpx.AsyncClient) -> None:
    params = {"skill": "math.square", "items": [1, 2]}
    task = await submit(api, ALICE, params=params, priority=5)
    assert task["status"] == "QUEUED"
    assert (task["user_id"], task["tenant_id"], task["priority"]) == ("alice", "acme", 5)

    got = (await api.get(f"/v1/tasks/{task['id']}", headers=ALICE)).json()
    assert got["status"] == "QUEUED" and got["params"] == params

    listed = (await api.get("/v1/tasks", headers=ALICE)).json()
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]

    cancelled = await api.delete(f"/v1/tasks/{task['id']}", headers=ALICE)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    again = await api.delete(f"/v1/tasks/{task['id']}", headers=ALICE)
    assert_error(again, 409, "illegal_transition")
    listed = (await api.get("/v1/tasks?status=CANCELLED", headers=ALICE)).json()
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]


async def test_batch_submission_is_atomic_and_returns_every_task(api: httpx.AsyncClient) -> None:
    body = {"tasks": [{"type": "map", "params": {"skill": "math.square", "items": [i]}}
                      for i in range(3)]}  # fmt: skip
    response = await api.post("/v1/tasks", json=body, headers=ALICE)
    assert response.status_code == 201
    tasks = response.json()["tasks"]
    assert [t["params"]["items"] for t in tasks] == [[0], [1], [2]]
    assert {t["status"] for t in tasks} == {"QUEUED"}
    bad = {"tasks": [DEMO_TASK, {"type": "Not A Type"}]}
    assert_error(await api.post("/v1/tasks", json=bad, headers=ALICE), 422, "invalid_request")
    listed = (await api.get("/v1/tasks", headers=ALICE)).json()["tasks"]
    assert len(listed) == 3  # the invalid batch wrote nothing


async def test_the_same_idempotency_key_twice_yields_one_task(api: httpx.AsyncClient) -> None:
    headers = {**ALICE, "Idempotency-Key": "run-42"}
    first = await api.post("/v1/tasks", json=DEMO_TASK, headers=headers)
    second = await api.post("/v1/tasks", json=DEMO_TASK, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert len((await api.get("/v1/tasks", headers=ALICE)).json()["tasks"]) == 1

    other = await api.post("/v1/tasks", json={**DEMO_TASK, "priority": 3}, headers=headers)
    assert_error(other, 409, "idempotency_conflict")
    # Keys are per user: Bob's "run-42" is his own task.
    bob = await api.post("/v1/tasks", json=DEMO_TASK, headers={**BOB, "Idempotency-Key": "run-42"})
    assert bob.status_code == 201 and bob.json()["id"] != first.json()["id"]


async def test_batch_replay_with_an_idempotency_key(api: httpx.AsyncClient) -> None:
    headers = {**ALICE, "Idempotency-Key": "batch-1"}
    body = {"tasks": [DEMO_TASK, {**DEMO_TASK, "priority": 1}]}
    first = await api.post("/v1/tasks", json=body, headers=headers)
    second = await api.post("/v1/tasks", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert [t["id"] for t in first.json()["tasks"]] == [t["id"] for t in second.json()["tasks"]]


async def test_tasks_of_other_tenants_and_users_are_invisible(api: httpx.AsyncClient) -> None:
    task = await submit(api, ALICE)
    for headers in (EVE, BOB):
        assert_error(await api.get(f"/v1/tasks/{task['id']}", headers=headers), 404, "not_found")
        assert_error(await api.delete(f"/v1/tasks/{task['id']}", headers=headers), 404, "not_found")
        assert (await api.get("/v1/tasks", headers=headers)).json()["tasks"] == []
    # The tenant's admin sees it; an admin of another tenant does not.
    assert (await api.get(f"/v1/tasks/{task['id']}", headers=ADMIN)).status_code == 200
    evil_admin = auth(token("boss", tenant="evil", roles=("admin",)))
    assert (await api.get(f"/v1/tasks/{task['id']}", headers=evil_admin)).status_code == 404


async def test_paging_newest_first(api: httpx.AsyncClient) -> None:
    ids = [(await submit(api, ALICE, priority=i))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/v1/tasks", params=params, headers=ALICE)).json()
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    for bad in ({"limit": 0}, {"limit": 501}, {"status": "NOPE"}, {"cursor": "x"},
                {"cursor": 2**63}):  # fmt: skip
        response = await api.get("/v1/tasks", params=bad, headers=ALICE)
        assert_error(response, 422, "invalid_request")


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"type": "Has Spaces"},
        {**DEMO_TASK, "surprise": 1},
        {**DEMO_TASK, "priority": 1000},
        {**DEMO_TASK, "resources": {"cpu": -1}},
        {**DEMO_TASK, "dependencies": ["not-a-uuid"]},
        {**DEMO_TASK, "params": [1, 2]},
        {"type": "no_such_type"},
        {"type": "map", "params": {"skill": "no.such_skill", "items": [1]}},
        {"type": "map", "params": {"skill": "math.square", "items": ["not a number"]}},
        {"type": "map", "params": {"skill": "math.square", "items": []}},
        {"type": "map_reduce", "params": {"skill": "math.square", "items": [1], "reduce": "x"}},
        {**DEMO_TASK, "strategy": "PIPELINE"},
        {"type": "pipeline", "params": {"stages": [], "items": ["a"]}},
        {"type": "sweep", "params": {"skill": "sim.logistic", "parameter_sets": [{"r": -1}]}},
        {"type": "sweep", "params": {"skill": "math.square", "grid": {"r": [1]}}},
        {"type": "prompt", "params": {"model": "m", "prompts": []}},
        {**DEMO_TASK, "placement": {"strategy": "consolidation", "strict": True}},
        {**DEMO_TASK, "placement": {"zone": "z1"}},
        {**DEMO_TASK, "placement": {"bundles": 0}},
        {**DEMO_TASK, "placement": {"strategy": "nearest"}},
        {"tasks": []},
        [],
        "text",
    ],
)
async def test_invalid_bodies_get_422(api: httpx.AsyncClient, body: Any) -> None:
    assert_error(await api.post("/v1/tasks", json=body, headers=ALICE), 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {**DEMO_TASK, "params": {**DEMO_TASK["params"], "requires": ["gpu"]}},
        {"type": "prompt", "params": {"model": "prsm-tiny", "prompts": ["hi"]}},  # no llm agent
    ],
)
async def test_work_no_registered_agent_can_do_is_refused_at_submit(
    api: httpx.AsyncClient, body: Any
) -> None:
    response = await api.post("/v1/tasks", json=body, headers=ALICE)
    assert_error(response, 422, "capability_mismatch")
    assert "no registered agent has" in response.json()["error"]["message"]
    assert (await api.get("/v1/tasks", headers=ALICE)).json()["tasks"] == []


async def test_malformed_json_gets_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/tasks", content=b'{"type": ', headers={**ALICE, "Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")


async def test_oversized_bodies_get_413(api: httpx.AsyncClient) -> None:
    big = json.dumps({**DEMO_TASK, "params": {"x": "a" * MAX_BODY}}).encode()
    declared = await api.post(
        "/v1/tasks", content=big, headers={**ALICE, "Content-Type": "application/json"}
    )
    assert_error(declared, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = await api.post(
        "/v1/tasks", content=chunks(), headers={**ALICE, "Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "payload_too_large")


async def test_unknown_routes_and_ids_get_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v1/nothing", headers=ALICE), 404, "not_found")
    assert_error(await api.get("/v1/tasks/not-a-uuid", headers=ALICE), 404, "not_found")
    missing = "00000000-0000-0000-0000-000000000000"
    assert_error(await api.get(f"/v1/tasks/{missing}", headers=ALICE), 404, "not_found")
    assert_error(await api.put("/v1/tasks", headers=ALICE), 405, "method_not_allowed")


# -- operations ----------------------------------------------------------------------------


async def test_health_ready_metrics(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok", "checks": {}}
    ready = await api.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok"}
    await api.get("/v1/whoami", headers=ALICE)
    text = (await api.get("/metrics")).text
    assert 'prsm_http_requests_total{method="GET",route="/v1/whoami",status="200"}' in text
    await submit(api, ALICE)
    text = (await api.get("/metrics")).text
    assert 'prsm_events_appended_total{source="gateway",type="TaskSubmitted"}' in text


async def test_correlation_id_is_kept_or_made(api: httpx.AsyncClient) -> None:
    given = await api.get("/v1/whoami", headers={**ALICE, "X-Correlation-ID": "req-123"})
    assert given.headers["x-correlation-id"] == "req-123"
    as_request_id = await api.get("/v1/whoami", headers={**ALICE, "X-Request-ID": "req-456"})
    assert as_request_id.headers["x-correlation-id"] == "req-456"
    made = await api.get("/v1/whoami", headers=ALICE)
    assert len(made.headers["x-correlation-id"]) == 32


async def test_openapi_schema_is_complete(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/whoami",
        "/health",
        "/ready",
        "/metrics",
    } <= set(paths)
    assert set(paths["/v1/tasks"]) == {"get", "post"}
    assert set(paths["/v1/tasks/{task_id}"]) == {"get", "delete"}
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "404" in paths["/v1/tasks/{task_id}"]["get"]["responses"]
