"""Helpers shared by the test suites: stores on a fresh SQLite file or PostgreSQL schema,
and events to append."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prsm.adapters.store.postgres import PostgresStore
from prsm.adapters.store.sqlite import SqliteStore
from prsm.domain import events as ev

POSTGRES_DSN = os.environ.get("PRSM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class StoreSpec:
    """Where a test store lives; picklable, so other processes can open the same store."""

    kind: str  # "sqlite" | "postgres"
    location: str  # file path, or PostgreSQL schema

    async def open(self) -> Any:
        if self.kind == "sqlite":
            return await SqliteStore.open(Path(self.location))
        return await PostgresStore.open(POSTGRES_DSN, schema=self.location, retry_seconds=30)


DEMO_TASK: dict[str, Any] = {"type": "map", "params": {"skill": "math.square", "items": [1, 2, 3]}}
"""A valid task body for tests about the API rather than about running tasks."""


async def register_agent(store: Any, capabilities: tuple[str, ...] = ("compute",)) -> str:
    """Record an agent in the registry stream, as the orchestrator does (tasks are refused
    at submit when no registered agent has the capabilities they need)."""
    agent_id = f"test-{uuid.uuid4().hex[:8]}"
    event = ev.AgentRegistered(
        agent_id=agent_id, agent_type="compute", capabilities=capabilities, cpu=1.0, gpu=0.0,
        memory_gb=0.0, region="", zone="", node_id="test", at=now(),
    )  # fmt: skip
    from prsm.service_layer.ports import StreamWrite

    await store.append([StreamWrite("agents", None, [ev.NewEvent(event, meta())])])
    return agent_id


def now() -> datetime:
    return datetime.now(UTC)


def meta(correlation_id: str = "test") -> ev.EventMetadata:
    return ev.EventMetadata(occurred_at=now(), source="tests", correlation_id=correlation_id)


def queued(task_id: str = "t") -> ev.NewEvent:
    return ev.NewEvent(ev.TaskQueued(task_id=task_id, at=now()), meta())


def submitted(task_id: str | None = None, user: str = "u1", tenant: str = "t1") -> ev.NewEvent:
    task_id = task_id or str(uuid.uuid4())
    event = ev.TaskSubmitted(
        task_id=task_id,
        task_type="demo",
        params={"n": 1},
        priority=0,
        user_id=user,
        tenant_id=tenant,
        cpu=1.0,
        gpu=0.0,
        memory_mb=0,
        dependencies=(),
        strategy="PARALLEL",
        submitted_at=now(),
        request_hash="h",
    )
    return ev.NewEvent(event, meta())


def free_port() -> int:
    """A free port above Ray's worker ports (10002-19999), below Serve's replica ports
    (30000+ with direct ingress) and the kernel's ephemeral range. A port the kernel hands
    out for ``bind(0)`` comes from the ephemeral range, where a Ray process starting
    meanwhile (its gRPC servers, outgoing connections) can take it before the test's server
    binds it."""
    import contextlib
    import random
    import socket

    low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(20000, min(max(low, 20001), 30000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def busy_registry(holds: int = 3) -> Any:
    """A model registry with something of every kind a snapshot holds: a shared model and a
    tenant's model with faults and a health change, a rollout that advanced and was then
    held ``holds`` times (no data), a finished rollout, and a declared one not started."""
    from datetime import timedelta

    from prsm.domain import registry_events as rev
    from prsm.domain.identity import Principal
    from prsm.domain.model_registry import ModelRegistry, deployment_key
    from prsm.domain.models import SHARED_TENANT, Faults, ModelSpec
    from prsm.domain.rollout_policy import RolloutPolicy, VersionStats

    t0, ann = now(), Principal("ann", "lab")
    admin = Principal("root", SHARED_TENANT, frozenset({"admin"}))
    policy = RolloutPolicy(evaluation_interval_s=10, min_window_s=0, min_samples=20)
    registry = ModelRegistry()
    registry.deploy(admin, ModelSpec(name="shared", version="v1", source="/m/s"), t0, True)
    registry.deploy(ann, ModelSpec(name="tiny", version="v1", source="/m/t", kv_cache_mb=64),
                    t0, False)  # fmt: skip
    registry.deployed(deployment_key(SHARED_TENANT, "shared", "v1"), t0)
    registry.deployed(deployment_key("lab", "tiny", "v1"), t0)
    registry.set_faults(ann, "tiny", "v1", Faults(0.1, 5), t0)
    registry.start_rollout(ann, "r1", "tiny", "v2", policy, t0 + timedelta(seconds=1))
    registry.deployed(deployment_key("lab", "tiny", "v2"), t0 + timedelta(seconds=2))
    registry.health(deployment_key("lab", "tiny", "v2"), t0 + timedelta(seconds=3), False, "slow")
    good, few = VersionStats(100, 0, 10.0), VersionStats(3, 0, 10.0)
    registry.evaluate_rollout("r1", t0 + timedelta(seconds=20), good, good)
    for i in range(holds):
        registry.evaluate_rollout("r1", t0 + timedelta(seconds=30 + 10 * i), good, few)
    registry.start_rollout(admin, "r0", "shared", "v2", policy, t0 + timedelta(seconds=4))
    registry.abort_rollout(admin, "r0", t0 + timedelta(seconds=5))
    registry.declare_rollout(admin, rev.RolloutDeclared(
        rollout_id="r2", tenant_id=SHARED_TENANT, model="shared", at=t0, new_version="v3",
        current_version=None, source=None, policy=policy, declared_by="serve-config"))  # fmt: skip
    return registry
