"""Schemathesis over the gateway's own OpenAPI schema, with a valid admin token: whatever
inputs the schema allows (and the invalid ones schemathesis derives from it), the gateway
never answers 5xx. Bounded: a fixed number of examples, no deadline per example."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from prsm.adapters.skill_code import installed
from prsm.bootstrap import Store, backend_factory, open_store, utc_now
from prsm.config import Settings
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.serve.model_catalog import ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_gateway_api import ADMIN, CODEC
from tests.support import register_agent

EXAMPLES = 800
BODIES = 150  # per operation whose body schema is checked against what it accepts


def not_running(response: Any) -> bool:
    """The one 5xx a valid request may get here: the runtime actors (orchestrator, scheduler,
    the traffic figures of a deployment the fuzzing created) do not run in this process, and
    their routes say so with a 503 of their own code."""
    codes = ('"orchestrator_unavailable"', '"scheduler_unavailable"', '"runtime_unavailable"')
    return response.status_code == 503 and any(code in response.text for code in codes)


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def store(config: Settings) -> Iterator[Store]:
    """Closed as a fixture, i.e. after schemathesis has ended the application's lifespan at
    teardown: closed earlier, the lifespan's log follower would still be reading from it."""
    opened = asyncio.run(open_store(config))
    yield opened
    asyncio.run(opened.close())


def gateway(config: Settings, store: Store) -> Any:
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        models=ModelCatalog(store, backend_factory(config)),
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(deps))


def bounded(examples: int, derandomize: bool = False) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def test_no_input_the_schema_admits_gets_a_5xx(config: Settings, store: Store) -> None:
    schema = gateway(config, store)
    seen: dict[int, int] = {}
    server_errors: list[str] = []

    @given(case=schema.as_strategy())
    @bounded(EXAMPLES)
    def fuzz(case: Any) -> None:
        response = case.call(headers=ADMIN)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if response.status_code >= 500 and not not_running(response):
            server_errors.append(f"{case.method} {case.formatted_path}: {response.text[:300]}")

    fuzz()
    assert not server_errors, server_errors[:5]
    assert sum(seen.values()) >= EXAMPLES // 2 and any(s < 300 for s in seen), seen


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/deployments"])
def test_bodies_the_schema_describes_are_accepted(config: Settings, store: Store,
                                                  path: str) -> None:  # fmt: skip
    """Bodies generated from the schema alone (positive cases) are not mostly refused: the
    schema says what the validation accepts, one body schema per task type or framework.
    Schemathesis warns "mostly rejected generated data" when an operation answers its
    positive cases with client errors only; here some must be accepted, and none get a 5xx.
    (With one free ``params`` object for every task type, none of 150 was.)"""
    asyncio.run(register_agent(store, ("compute", "llm", "simulation")))
    operation = gateway(config, store)[path]["POST"]
    seen: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @bounded(BODIES, derandomize=True)  # a task body names a real skill a few times in 100
    def fuzz(case: Any) -> None:
        seen[case.call(headers=ADMIN).status_code] += 1

    fuzz()
    accepted = sum(n for code, n in seen.items() if code < 300)
    assert accepted and not any(code >= 500 for code in seen), dict(seen)
