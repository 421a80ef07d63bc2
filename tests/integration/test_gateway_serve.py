"""The gateway as a Ray Serve application, over real HTTPS (the gateway's TLS option, a
self-signed certificate), with two replicas sharing the embedded store."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from prsm import bootstrap
from prsm.config import Settings
from prsm.runtime import orchestrator, scheduler
from prsm.serve.deployment import gateway_app
from tests.support import DEMO_TASK, free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "gateway.crt", directory / "gateway.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


TLS: dict[str, ssl.SSLContext] = {}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    data_dir: Path = tmp_path_factory.mktemp("prsm-serve")
    certfile, keyfile = self_signed(data_dir)
    TLS["verify"] = ssl.create_default_context(cafile=str(certfile))
    settings = Settings(
        data_dir=data_dir,
        http_port=free_port(),
        tls_certfile=str(certfile),
        tls_keyfile=str(keyfile),
    )
    settings = settings.model_copy(update={"agents": {"compute": 1}})
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    try:
        bootstrap.start_orchestrator(settings)
        serve.start(http_options=bootstrap.http_options(settings))
        app = gateway_app(bootstrap.build_gateway, settings.for_replicas(), replicas=2)
        serve.run(app, name="prsm", route_prefix="/")
        assert settings.gateway_url.startswith("https://")
        yield settings.gateway_url, settings
    finally:
        scheduler.stop()
        orchestrator.stop()
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_the_api_over_http(gateway: tuple[str, Settings]) -> None:
    url, settings = gateway
    app_status = serve.status().applications["prsm"]
    replicas = app_status.deployments["gateway"].replica_states
    assert replicas.get("RUNNING") == 2

    headers = {"Authorization": f"Bearer {bootstrap.issue_token(settings, 'ann', 'lab')}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, verify=TLS["verify"]) as http:
        assert http.get("/v1/whoami").json()["user_id"] == "ann"
        assert http.get("/ready").json()["checks"] == {"store": "ok", "ray": "ok"}

        # Retries with one key land on either replica and still make one task.
        keyed = {"Idempotency-Key": "serve-1"}
        first = http.post("/v1/tasks", json=DEMO_TASK, headers=keyed).json()
        assert first["status"] == "QUEUED" and first["queue"]["position"] >= 1  # from the scheduler
        ids = {http.post("/v1/tasks", json=DEMO_TASK, headers=keyed).json()["id"] for _ in range(6)}
        assert len(ids) == 1
        task_id = ids.pop()
        # Every replica reads what any replica wrote; the orchestrator's agent runs it.
        deadline = time.monotonic() + 60
        while (task := http.get(f"/v1/tasks/{task_id}").json())["status"] != "SUCCEEDED":
            assert task["status"] in ("QUEUED", "SCHEDULED", "RUNNING"), task
            assert time.monotonic() < deadline, task
            time.sleep(0.1)
        assert task["result"] == {"outputs": [1, 4, 9]} and task["progress"] == 100.0
        assert [t["id"] for t in http.get("/v1/tasks").json()["tasks"]] == [task_id]

        [agent] = http.get("/v1/agents").json()["agents"]  # an admin sees where it runs
        assert agent["type"] == "compute" and agent["status"] in ("AVAILABLE", "BUSY")
        # Where it ran: the pooled agent's node, no bundle (the default request reserves none).
        [place] = task["ran_on"]
        assert place == {"node_id": agent["node_id"], "bundle": None, "completed": 3, "failed": 0}
        assert agent["node_id"] == ray.get_runtime_context().get_node_id()
        viewer_token = bootstrap.issue_token(settings, "v", "lab", frozenset({"viewer"}))
        viewer = {"Authorization": f"Bearer {viewer_token}"}
        [seen] = http.get("/v1/agents", headers=viewer).json()["agents"]
        assert seen["id"] == agent["id"] and seen["node_id"] is None
        assert http.post(f"/v1/agents/{agent['id']}/drain", headers=viewer).status_code == 403
        [node] = http.get("/v1/cluster").json()["nodes"]
        assert node["total"]["CPU"] == 4 and node["address"] and node["free"]["CPU"] <= 4
        assert http.get("/v1/cluster", headers=viewer).json()["nodes"][0]["address"] is None
        bad = http.post("/v1/tasks", json={**DEMO_TASK, "params": {"skill": "llm.complete",
                                                                   "items": [1]}})  # fmt: skip
        assert bad.status_code == 422

        missing = http.get("/v1/tasks/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert http.get("/v1/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401


async def test_a_replica_killed_under_load_loses_no_accepted_task(
    gateway: tuple[str, Settings],
) -> None:
    url, settings = gateway
    headers = {"Authorization": f"Bearer {bootstrap.issue_token(settings, 'load', 'lab')}"}
    keys = [f"load-{i}" for i in range(60)]
    accepted: dict[str, str] = {}
    retried = 0
    enough = asyncio.Event()
    killed: list[str] = []

    async def submit(http: httpx.AsyncClient, key: str) -> None:
        nonlocal retried
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # a client that retries with its key until the gateway answers
            try:
                response = await http.post(
                    "/v1/tasks", json=DEMO_TASK, headers={"Idempotency-Key": key}
                )
                if response.status_code in (200, 201):
                    accepted[key] = response.json()["id"]
                    if len(accepted) >= 15:
                        enough.set()
                    return
                assert response.status_code >= 500, response.text
            except httpx.TransportError:
                pass
            retried += 1
            assert asyncio.get_running_loop().time() < deadline, f"{key} never accepted"
            await asyncio.sleep(0.1)

    async def worker(http: httpx.AsyncClient, mine: list[str]) -> None:
        for key in mine:
            await submit(http, key)

    async def kill_a_replica() -> None:
        await enough.wait()
        names = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::prsm#gateway")
        ]
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        killed.append(names[0])

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, verify=TLS["verify"]
    ) as http:
        await asyncio.gather(kill_a_replica(), *(worker(http, keys[w::4]) for w in range(4)))
        listed = (await http.get("/v1/tasks", params={"limit": 500})).json()["tasks"]

    print(f"killed {killed}, client retries: {retried}")
    assert killed, "a replica must have been killed"
    assert set(accepted) == set(keys)
    assert len(set(accepted.values())) == len(keys)  # one task per key, never two
    assert sorted(t["id"] for t in listed) == sorted(accepted.values())


def test_a_revoked_api_key_is_refused_by_both_replicas_at_once(
    gateway: tuple[str, Settings],
) -> None:
    url, settings = gateway
    token = {"Authorization": f"Bearer {bootstrap.issue_token(settings, 'kay', 'lab')}"}
    with httpx.Client(base_url=url, timeout=30, verify=TLS["verify"]) as http:
        created = http.post("/v1/keys", json={"name": "ci"}, headers=token).json()
        key = {"Authorization": f"Bearer {created['key']}"}
        assert all(http.get("/v1/whoami", headers=key).status_code == 200 for _ in range(6))
        assert http.delete(f"/v1/keys/{created['id']}", headers=token).status_code == 200
        statuses = {http.get("/v1/whoami", headers=key).status_code for _ in range(10)}
        assert statuses == {401}
