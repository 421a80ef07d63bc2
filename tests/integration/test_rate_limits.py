"""Rate limits: token buckets per principal and route class — in-process, and in the real
Redis shared by several OS processes, never granting more than the bucket holds; 429 with
Retry-After through the gateway (audited); Redis unreachable fails open or closed."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from prsm.adapters.skill_code import installed
from prsm.bootstrap import utc_now
from prsm.domain.errors import RateLimited, RateLimiterUnavailable
from prsm.domain.identity import Principal
from prsm.security.rate_limits import (
    Bucket,
    LocalBuckets,
    RateLimiter,
    RedisBuckets,
    lease_size,
    parse_limits,
)
from prsm.security.tokens import VerifiedTokens
from prsm.serve.app import create_app
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_gateway_api import ADMIN, ALICE, BOB, CODEC
from tests.support import DEMO_TASK, register_agent

REDIS_URL = os.environ.get("PRSM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALICE_P = Principal("alice", "acme", frozenset({"user"}))


def test_limits_are_parsed_and_bad_ones_refused() -> None:
    assert parse_limits("inference=2.5/10, reads=100/200") == {
        "inference": Bucket(2.5, 10), "reads": Bucket(100, 200),
    }  # fmt: skip
    for bad in ("inference=fast", "x=0/1", "x=1/0", "=1/1"):
        with pytest.raises(Exception, match="rate limit"):
            parse_limits(bad)


async def test_local_buckets_allow_the_burst_then_refill() -> None:
    limiter = RateLimiter({"tasks": Bucket(1000.0, 3)}, LocalBuckets(), fail_open=True)
    for _ in range(3):
        await limiter.check(ALICE_P, "tasks")
    with pytest.raises(RateLimited) as refused:
        await limiter.check(ALICE_P, "tasks")
    assert 0 < refused.value.retry_after_s <= 0.001  # type: ignore[operator]
    await limiter.check(ALICE_P, "reads")  # another class: no limit configured
    await asyncio.sleep(0.01)
    await limiter.check(ALICE_P, "tasks")  # refilled


def _hammer(url: str, key: str, attempts: int, start: Any, out: Any) -> None:
    async def run() -> int:
        buckets = RedisBuckets(url)
        start.wait()
        results = await asyncio.gather(
            *(buckets.take(key, Bucket(0.001, 25)) for _ in range(attempts))
        )
        await buckets.close()
        return sum(1 for wait in results if wait == 0)

    out.put(asyncio.run(run()))


def test_concurrent_clients_in_several_processes_never_exceed_the_bucket() -> None:
    """The exactness LiteLLM's users found broken: 6 processes × 40 concurrent takes against
    one bucket of 25 (refilling once in 1,000 s) get exactly 25 tokens between them."""
    key = f"test-{uuid.uuid4().hex}"
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(REDIS_URL, key, 40, start, out))
               for _ in range(6)]  # fmt: skip
    for w in workers:
        w.start()
    start.set()
    granted = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(granted) == 25, granted


async def test_replicas_leasing_tokens_never_grant_more_than_the_bucket() -> None:
    bucket = Bucket(8.0, 64)
    assert lease_size(bucket) == 8 and lease_size(Bucket(1.0, 2)) == 1
    assert lease_size(Bucket(0.001, 64)) == 1  # never more than a second's refill
    key = f"test-{uuid.uuid4().hex}"
    replicas = [RedisBuckets(REDIS_URL), RedisBuckets(REDIS_URL)]
    started = time.monotonic()
    waits = await asyncio.gather(*(replicas[i % 2].take(key, bucket) for i in range(200)))
    refilled = math.ceil(8.0 * (time.monotonic() - started))
    assert 64 <= sum(1 for wait in waits if wait == 0) <= 64 + refilled
    for replica in replicas:
        await replica.close()


async def test_redis_unreachable_fails_open_or_closed_as_configured() -> None:
    dead = "redis://127.0.0.1:1/0"
    limits = {"tasks": Bucket(1.0, 1)}
    await RateLimiter(limits, RedisBuckets(dead), fail_open=True).check(ALICE_P, "tasks")
    with pytest.raises(RateLimiterUnavailable):
        await RateLimiter(limits, RedisBuckets(dead), fail_open=False).check(ALICE_P, "tasks")


@pytest.fixture
async def limited(store: Any) -> AsyncIterator[httpx.AsyncClient]:
    await register_agent(store)
    buckets = RedisBuckets(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}:")
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed()),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        rate_limit=RateLimiter({"tasks": Bucket(0.01, 2)}, buckets, fail_open=False).check,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    await buckets.close()


async def test_the_gateway_answers_429_with_retry_after_per_principal(
    limited: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        assert (await limited.post("/v1/tasks", json=DEMO_TASK, headers=ALICE)).is_success
    refused = await limited.post("/v1/tasks", json=DEMO_TASK, headers=ALICE)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await limited.post("/v1/tasks", json=DEMO_TASK, headers=BOB)).is_success
    assert (await limited.get("/v1/tasks", headers=ALICE)).status_code == 200  # reads: no limit
    audit = (await limited.get("/v1/audit", params={"allowed": "false"}, headers=ADMIN)).json()
    [entry] = [e for e in audit["entries"]
               if e["correlation_id"] == refused.headers["x-correlation-id"]]  # fmt: skip
    assert (entry["stage"], entry["user_id"]) == ("rate_limit", "alice")
