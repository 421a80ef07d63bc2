"""The gateway as a Ray Serve application, over real HTTPS (the gateway's TLS option, a
self-signed certificate), with two replicas sharing the embedded store."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import multiprocessing
import sqlite3
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from prsm import bootstrap
from prsm.config import Settings
from prsm.runtime import actors, model_controller, orchestrator, scheduler
from prsm.serve.deployment import gateway_app
from tests.integration import soak_clients
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
READY_CHECKS = ("store", "ray", "scheduler", "orchestrator", "model_controller")


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
        bootstrap.start_model_controller(settings)
        assert settings.gateway_url.startswith("https://")
        yield settings.gateway_url, settings
    finally:
        scheduler.stop()
        orchestrator.stop()
        model_controller.stop()
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
        assert http.get("/ready").json()["checks"] == dict.fromkeys(READY_CHECKS, "ok")

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


def _count(db: Path, sql: str, args: list[str]) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def _submitted(db: Path) -> int:
    return _count(db, "SELECT count(*) FROM events WHERE event_type = 'TaskSubmitted'", [])


def _succeeded(db: Path, ids: list[str]) -> int:
    streams = [f"task-{i}" for i in ids]
    marks = ",".join("?" * len(streams))
    return _count(db, "SELECT count(*) FROM events WHERE event_type = 'TaskSucceeded'"
                      f" AND stream_id IN ({marks})", streams)  # fmt: skip


async def test_a_replica_killed_under_a_soak_loses_and_duplicates_no_task(
    gateway: tuple[str, Settings],
) -> None:
    """2,000 keyed single submissions from 4 client processes that retry, while one of the
    two replicas is killed: every key is one task, and every task succeeds."""
    url, settings = gateway
    db = settings.sqlite_path
    keys = [f"soak-{i}" for i in range(2000)]
    tokens = [bootstrap.issue_token(settings, f"soak{c}", "lab") for c in range(4)]
    before = await asyncio.to_thread(_submitted, db)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        clients = [loop.run_in_executor(pool, soak_clients.submit_all, url, tokens[c],
                                        str(settings.tls_certfile), keys[c::4])
                   for c in range(4)]  # fmt: skip
        while await asyncio.to_thread(_submitted, db) - before < 300:
            assert not any(c.done() for c in clients), "the clients stopped before the kill"
            await asyncio.sleep(0.1)
        [name, *_] = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith("SERVE_REPLICA::prsm#gateway")]  # fmt: skip
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        results = await asyncio.gather(*clients)
    accepted = {k: v for found, _ in results for k, v in found.items()}
    retried = sum(r for _, r in results)
    print(f"killed {name} after 300 submissions; client retries: {retried}")
    assert set(accepted) == set(keys)
    ids = sorted(set(accepted.values()))
    assert len(ids) == len(keys)  # one task per key, never two
    assert await asyncio.to_thread(_submitted, db) - before == len(keys)
    deadline = time.monotonic() + 300
    while (done := await asyncio.to_thread(_succeeded, db, ids)) < len(ids):
        assert time.monotonic() < deadline, f"{done} of {len(ids)} tasks succeeded"
        await asyncio.sleep(1)
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, verify=TLS["verify"]) as http:
        for key in keys[0:40:4]:  # what the first client's user sees of its own tasks
            task = (await http.get(f"/v1/tasks/{accepted[key]}")).json()
            assert task["status"] == "SUCCEEDED" and task["result"] is not None


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


def _ready_until(
    http: httpx.Client, status: int, check: str = "", says: str = "ok"
) -> dict[str, str]:
    """Poll /ready until it answers ``status`` with ``check`` (if given) saying ``says``."""
    deadline = time.monotonic() + 60
    while True:
        r = http.get("/ready")
        checks: dict[str, str] = r.json()["checks"]
        if r.status_code == status and (not check or checks[check] == says):
            return checks
        assert time.monotonic() < deadline, checks
        time.sleep(0.05)


def test_the_gateway_leaves_readiness_while_a_runtime_actor_is_down(
    gateway: tuple[str, Settings],
) -> None:
    """Each runtime actor killed for good: both replicas answer 503 naming it, and 200 again
    once it is started again (the last test here: it replaces the module's actors)."""
    url, settings = gateway
    starts = {
        "scheduler": (scheduler.NAME, bootstrap.start_scheduler),
        "orchestrator": (orchestrator.NAME, bootstrap.start_orchestrator),
        "model_controller": (model_controller.NAME, bootstrap.start_model_controller),
    }
    with httpx.Client(base_url=url, timeout=30, verify=TLS["verify"]) as http:
        assert _ready_until(http, 200) == dict.fromkeys(READY_CHECKS, "ok")
        for check, (name, start) in starts.items():
            actors.kill(name)
            # Gone for good (its name free again), not merely restarting.
            down = _ready_until(http, 503, check, "failing: not running")
            assert {k for k, v in down.items() if v != "ok"} == {check}
            for _ in range(6):  # either replica says so
                assert http.get("/ready").json()["status"] == "not ready"
            start(settings)
            assert _ready_until(http, 200) == dict.fromkeys(READY_CHECKS, "ok")
