"""Skills and shipped code through the gateway's HTTP API in-process (ASGI), on both real
stores: package uploads, the skill registry (versions, code hashes, retirement), who may do
what, tenant invisibility, schema checks at submit, and a task's result endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prsm.adapters.blobs import BlobStore
from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.client_packages import zip_folder
from prsm.domain import runtime_env
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_gateway_api import ALICE, BOB, CODEC, EVE, assert_error, auth, token
from tests.support import register_agent

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = auth(token("olga", roles=("operator",)))
ADMIN = auth(token("root", roles=("admin",)))
SIR = {"beta": 0.3, "gamma": 0.1}


@pytest.fixture
async def api(store: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    await register_agent(store)
    blobs = BlobStore(str(tmp_path / "results"))
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, "gateway", installed(), blobs),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        max_body_bytes=64 * 1024,
        max_package_bytes=2**20,
        blobs=blobs,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def upload(api: httpx.AsyncClient, data: bytes, name: str = "working_dir.zip",
                 headers: dict[str, str] = OPERATOR) -> httpx.Response:  # fmt: skip
    return await api.post("/v1/packages", params={"filename": name}, content=data,
                          headers=headers)  # fmt: skip


async def register(api: httpx.AsyncClient, ref: str, version: str = "1.0.0",
                   headers: dict[str, str] = OPERATOR, **extra: Any) -> httpx.Response:  # fmt: skip
    body = {"name": "sir.simulate", "version": version, "code": "sirmodel.core:simulate",
            "capability": "simulation", "runtime_env": {"working_dir": ref},
            "input_schema": {"type": "object", "required": ["beta", "gamma"],
                             "properties": {"beta": {"type": "number", "maximum": 10}}},
            **extra}  # fmt: skip
    return await api.post("/v1/skills", json=body, headers=headers)


async def test_a_registered_skill_is_run_by_its_tenant_and_invisible_to_others(
    api: httpx.AsyncClient,
) -> None:
    package = zip_folder(ROOT / "examples" / "sirmodel")
    uploaded = await upload(api, package)
    assert uploaded.status_code == 201, uploaded.text
    ref = uploaded.json()["ref"]
    assert ref.startswith("sha256:") and ref.endswith("/working_dir.zip")
    assert (await upload(api, package)).json()["ref"] == ref  # by content: the same
    assert_error(await upload(api, package, headers=ALICE), 403, "forbidden")  # a user
    assert_error(await upload(api, b"x" * (2**20 + 1)), 413, "payload_too_large")
    assert_error(await upload(api, package, "x.tar.gz"), 422, "invalid_request")

    created = await register(api, ref)
    assert created.status_code == 201, created.text
    skill = created.json()
    assert (skill["origin"], skill["shared"], skill["version"]) == ("registered", False, "1.0.0")
    assert skill["code_hash"] == runtime_env.code_hash({"working_dir": ref})
    assert_error(await register(api, ref), 409, "conflict")  # a version never changes
    assert_error(await register(api, ref, headers=ALICE), 403, "forbidden")
    assert_error(await register(api, f"sha256:{'1' * 64}/working_dir.zip", "2"), 422,
                 "invalid_request")  # fmt: skip
    bad = await register(api, ref, "3", input_schema={"type": "nope"})
    assert_error(bad, 422, "invalid_request")
    assert "not a JSON Schema" in bad.json()["error"]["message"]
    taken = await api.post("/v1/skills", headers=OPERATOR, json={
        "name": "math.square", "version": "1", "code": "m:f", "runtime_env": {}})  # fmt: skip
    assert_error(taken, 409, "conflict")

    listed = (await api.get("/v1/skills", headers=BOB)).json()["skills"]
    names = {(s["name"], s["origin"]) for s in listed}
    assert ("sir.simulate", "registered") in names and ("math.square", "installed") in names
    assert "sir.simulate" not in {s["name"] for s in (await api.get(
        "/v1/skills", headers=EVE)).json()["skills"]}  # fmt: skip
    assert_error(await api.get("/v1/skills/sir.simulate", headers=EVE), 404, "not_found")

    # Another user of the tenant (no skills:write) runs it; the task records its code.
    task = await api.post("/v1/tasks", headers=BOB, json={
        "type": "map", "params": {"skill": "sir.simulate", "items": [SIR]}})  # fmt: skip
    assert task.status_code == 201, task.text
    shown = (await api.get(f"/v1/tasks/{task.json()['id']}", headers=BOB)).json()
    [used] = shown["skills"]
    assert (used["name"], used["origin"], used["version"]) == ("sir.simulate", "registered",
                                                                "1.0.0")  # fmt: skip
    assert used["code_hash"] == skill["code_hash"]
    assert shown["runtime_env"] == {"working_dir": ref}
    other = await api.post("/v1/tasks", headers=EVE, json={
        "type": "map", "params": {"skill": "sir.simulate", "items": [SIR]}})  # fmt: skip
    assert_error(other, 422, "invalid_request")
    assert_error(await api.get(f"/v1/tasks/{task.json()['id']}/result", headers=EVE), 404,
                 "not_found")  # fmt: skip
    assert_error(await api.get(f"/v1/tasks/{task.json()['id']}/result", headers=BOB), 409,
                 "not_finished")  # fmt: skip

    # Items are checked against its input schema at submit, naming the item and the field.
    too_high = {"skill": "sir.simulate", "items": [SIR, {"beta": 11, "gamma": 1}]}
    refused = await api.post("/v1/tasks", headers=BOB, json={"type": "map", "params": too_high})
    assert_error(refused, 422, "invalid_request")
    message = refused.json()["error"]["message"]
    assert "items[1].beta: 11 is greater than the maximum of 10" in message

    # A new version becomes the default; the old one stays callable by name@version until
    # it is retired.
    assert (await register(api, ref, "1.1.0")).status_code == 201
    newest = await api.post("/v1/tasks", headers=BOB, json={
        "type": "map", "params": {"skill": "sir.simulate", "items": [SIR]}})  # fmt: skip
    shown = (await api.get(f"/v1/tasks/{newest.json()['id']}", headers=BOB)).json()
    assert shown["skills"][0]["version"] == "1.1.0"
    retired = await api.delete("/v1/skills/sir.simulate/1.0.0", headers=OPERATOR)
    assert retired.status_code == 200, retired.text
    pinned = await api.post("/v1/tasks", headers=BOB, json={
        "type": "map", "params": {"skill": "sir.simulate@1.0.0", "items": [SIR]}})  # fmt: skip
    assert_error(pinned, 422, "invalid_request")
    assert_error(await api.delete("/v1/skills/sir.simulate/1.1.0", headers=EVE), 403, "forbidden")
    elsewhere = auth(token("oz", tenant="evil", roles=("operator",)))
    assert_error(await api.delete("/v1/skills/sir.simulate/1.1.0", headers=elsewhere), 404,
                 "not_found")  # fmt: skip


async def test_shared_skills_are_for_admins_to_register_and_everyone_to_run(
    api: httpx.AsyncClient,
) -> None:
    ref = (await upload(api, zip_folder(ROOT / "examples" / "sirmodel"))).json()["ref"]
    assert_error(await register(api, ref, shared=True), 403, "forbidden")  # an operator
    assert (await register(api, ref, headers=ADMIN, shared=True)).status_code == 201
    listed = (await api.get("/v1/skills/sir.simulate", headers=EVE)).json()["skills"]
    assert [(s["version"], s["shared"]) for s in listed] == [("1.0.0", True)]
    ran = await api.post("/v1/tasks", headers=EVE, json={
        "type": "map", "params": {"skill": "sir.simulate", "items": [SIR]}})  # fmt: skip
    assert ran.status_code == 201, ran.text


async def test_a_skills_declared_resources_apply_when_a_task_does_not_say(
    api: httpx.AsyncClient,
) -> None:
    ref = (await upload(api, zip_folder(ROOT / "examples" / "sirmodel"))).json()["ref"]
    created = await register(api, ref, resources={"cpu": 2, "memory_mb": 512})
    assert created.json()["resources"] == {"cpu": 2, "memory_mb": 512}
    plain = {"type": "map", "params": {"skill": "sir.simulate", "items": [SIR]}}
    task = (await api.post("/v1/tasks", headers=BOB, json=plain)).json()
    assert task["resources"] == {"cpu": 2.0, "gpu": 0.0, "memory_mb": 512}
    own = {**plain, "resources": {"cpu": 0.5}}
    task = (await api.post("/v1/tasks", headers=BOB, json=own)).json()
    assert task["resources"] == {"cpu": 0.5, "gpu": 0.0, "memory_mb": 0}


async def test_shipping_code_with_a_task_needs_skills_write(api: httpx.AsyncClient) -> None:
    ref = (await upload(api, zip_folder(ROOT / "examples" / "sirmodel"))).json()["ref"]
    body = {"type": "map", "params": {"skill": "sirmodel.core:simulate", "items": [SIR]},
            "runtime_env": {"working_dir": ref}}  # fmt: skip
    assert_error(await api.post("/v1/tasks", headers=ALICE, json=body), 403, "forbidden")
    shipped = await api.post("/v1/tasks", headers=OPERATOR, json=body)
    assert shipped.status_code == 201, shipped.text
    assert_error(await api.post("/v1/tasks", headers=OPERATOR, json={
        **body, "runtime_env": {"working_dir": "./here"}}), 422, "invalid_request")  # fmt: skip
