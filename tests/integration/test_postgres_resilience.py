"""PostgreSQL connections dropped mid-run: appends retry; nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from prsm.adapters.store.postgres import PostgresStore
from prsm.service_layer.ports import StreamWrite
from tests.conftest import drop_schema, require_postgres
from tests.support import POSTGRES_DSN, queued


@pytest.fixture
async def victim() -> AsyncIterator[tuple[PostgresStore, str]]:
    await require_postgres()
    schema = f"prsm_test_{uuid.uuid4().hex[:12]}"
    app_name = f"prsm-victim-{uuid.uuid4().hex[:8]}"
    store = await PostgresStore.open(
        POSTGRES_DSN, schema=schema, pool_size=4, application_name=app_name
    )
    yield store, app_name
    await store.close()
    await drop_schema(schema)


async def test_dropped_connections_lose_and_duplicate_nothing(
    victim: tuple[PostgresStore, str],
) -> None:
    store, app_name = victim
    killer = await asyncpg.connect(POSTGRES_DSN)
    kills = 0
    done = asyncio.Event()

    async def kill_connections() -> None:
        nonlocal kills
        while not done.is_set():
            kills += await killer.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1) AS t",
                app_name,
            )
            await asyncio.sleep(0.1)

    async def writer(w: int) -> None:
        for i in range(75):
            await store.append([StreamWrite(f"w{w}-{i}", 0, [queued(f"{w}-{i}")])])

    chaos = asyncio.create_task(kill_connections())
    try:
        await asyncio.gather(*(writer(w) for w in range(4)))
    finally:
        done.set()
        await chaos
        await killer.close()

    assert kills > 0, "the test must actually drop connections"
    log = await store.read_log(0, {"TaskQueued"}, span=1000)
    assert [r.position for r in log.events] == list(range(1, 301))
    assert not log.more
    assert sorted(r.event.task_id for r in log.events) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(75)
    )


async def test_a_commit_whose_answer_was_lost_is_not_written_twice(
    victim: tuple[PostgresStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = victim
    real_exit = asyncpg.transaction.Transaction.__aexit__
    lost: list[bool] = []

    async def commit_then_lose_the_answer(self: Any, *exc_info: Any) -> None:
        await real_exit(self, *exc_info)
        if exc_info[0] is None and not lost:
            lost.append(True)
            raise ConnectionResetError("connection dropped after COMMIT")

    await store.append([StreamWrite("before", 0, [queued("0")])])
    monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", commit_then_lose_the_answer)
    recorded = await store.append(
        [StreamWrite("s", 0, [queued("a"), queued("b")]), StreamWrite("t", 0, [queued("c")])]
    )
    assert lost, "the fault must have been injected"
    assert [(r.stream_id, r.version, r.position) for r in recorded] == [
        ("s", 1, 2), ("s", 2, 3), ("t", 1, 4),
    ]  # fmt: skip
    log = await store.read_log(0, {"TaskQueued"})
    assert ([r.event.task_id for r in log.events], log.position) == (["0", "a", "b", "c"], 4)
