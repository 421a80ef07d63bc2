"""The gateway's log follower keeps the read views current, whatever one catch-up raised."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import pytest

from prsm.adapters.skill_code import installed
from prsm.domain.errors import StoreUnavailable
from prsm.security.tokens import TokenCodec, VerifiedTokens
from prsm.serve.app import follow_log
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus
from tests.unit.fakes import FakeStore

CODEC = TokenCodec(b"s" * 32, issuer="prsm", audience="prsm")


class FailingTwice(FakeStore):
    """Fails its first catch-up with a store error, its second with an unexpected one."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.recovered = asyncio.Event()

    async def catch_up(self) -> int:
        self.calls += 1
        if self.calls == 1:
            raise StoreUnavailable("SQLite store unavailable: disk I/O error")
        if self.calls == 2:
            raise RuntimeError("a bug in a projection")
        self.recovered.set()
        return await super().catch_up()


async def test_the_follower_logs_a_failed_catch_up_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingTwice()
    deps = GatewayDeps(
        bus=MessageBus(
            store, store, lambda: datetime.now(UTC), source="gateway", skills=installed()
        ),
        store=store,
        views=store,
        tokens=VerifiedTokens(CODEC),
        projection_interval_s=0.001,
    )
    with caplog.at_level(logging.WARNING, logger="prsm.gateway"):
        follower = asyncio.create_task(follow_log(deps))
        async with asyncio.timeout(5):
            await store.recovered.wait()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    messages = [r.getMessage() for r in caplog.records]
    assert "read views could not catch up: SQLite store unavailable: disk I/O error" in messages
    failed = [
        r for r in caplog.records if r.exc_info and "a bug in a projection" in str(r.exc_info[1])
    ]
    assert len(failed) == 1
