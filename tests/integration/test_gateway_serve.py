"""The gateway as a Ray Serve application, over real HTTP, with two replicas sharing the
embedded store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from prsm import bootstrap
from prsm.config import Settings
from prsm.serve.deployment import gateway_app
from tests.support import free_port


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    data_dir: Path = tmp_path_factory.mktemp("prsm-serve")
    settings = Settings(data_dir=data_dir, http_port=free_port())
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
        app = gateway_app(bootstrap.build_gateway, settings.for_replicas(), replicas=2)
        serve.run(app, name="prsm", route_prefix="/")
        yield f"http://127.0.0.1:{settings.http_port}", settings
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_the_api_over_http(gateway: tuple[str, Settings]) -> None:
    url, settings = gateway
    app_status = serve.status().applications["prsm"]
    replicas = app_status.deployments["gateway"].replica_states
    assert replicas.get("RUNNING") == 2

    headers = {"Authorization": f"Bearer {bootstrap.issue_token(settings, 'ann', 'lab')}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        assert http.get("/v1/whoami").json()["user_id"] == "ann"
        assert http.get("/ready").json()["checks"] == {"store": "ok", "ray": "ok"}

        # Retries with one key land on either replica and still make one task.
        keyed = {"Idempotency-Key": "serve-1"}
        ids = {
            http.post("/v1/tasks", json={"type": "demo"}, headers=keyed).json()["id"]
            for _ in range(6)
        }
        assert len(ids) == 1
        task_id = ids.pop()
        # Every replica reads what any replica wrote.
        for _ in range(10):
            assert http.get(f"/v1/tasks/{task_id}").json()["status"] == "QUEUED"
        assert [t["id"] for t in http.get("/v1/tasks").json()["tasks"]] == [task_id]

        missing = http.get("/v1/tasks/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert http.get("/v1/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401
