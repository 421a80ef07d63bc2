"""Code that runs in other OS processes during the store contract tests (spawned, so it
must be importable)."""

from __future__ import annotations

import asyncio
import random

from prsm.domain import events as ev
from prsm.domain.errors import ConcurrencyError
from prsm.service_layer.ports import StreamWrite
from tests.support import StoreSpec, meta, now

SHARED = "shared-stream"


def _event(worker: int, i: int) -> ev.NewEvent:
    return ev.NewEvent(ev.TaskQueued(task_id=f"w{worker}-{i}", at=now()), meta(f"w{worker}"))


async def _append_many(spec: StoreSpec, worker: int, count: int) -> None:
    store = await spec.open()
    rng = random.Random(worker)
    try:
        i = 0
        while i < count:
            if rng.random() < 0.3:  # the shared stream: optimistic concurrency, retried
                while True:
                    version = len(await store.read_stream(SHARED))
                    try:
                        await store.append([StreamWrite(SHARED, version, [_event(worker, i)])])
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(rng.random() * 0.005)
                i += 1
            else:
                n = min(rng.randint(1, 3), count - i)
                batch = [_event(worker, i + k) for k in range(n)]
                await store.append([StreamWrite(f"own-{worker}", None, batch)])
                i += n
    finally:
        await store.close()


def append_many(spec: StoreSpec, worker: int, count: int) -> None:
    asyncio.run(_append_many(spec, worker, count))


async def _tail(spec: StoreSpec, expected_total: int, seconds: float) -> list[int]:
    """Follow the global log while writers write, as a follower does (``read_log`` from the
    position the last read reached); return every position seen, in order."""
    store = await spec.open()
    seen: list[int] = []
    position = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while len(seen) < expected_total and loop.time() < deadline:
            page = await store.read_log(position, {"TaskQueued"}, span=50)
            seen.extend(r.position for r in page.events)
            position = page.position
            if not page.events:
                await asyncio.sleep(0.002)
    finally:
        await store.close()
    return seen


def tail(spec: StoreSpec, expected_total: int, seconds: float) -> list[int]:
    return asyncio.run(_tail(spec, expected_total, seconds))


async def _catch_up(spec: StoreSpec) -> int:
    store = await spec.open()
    try:
        return int(await store.catch_up(batch=7))
    finally:
        await store.close()


def catch_up(spec: StoreSpec) -> int:
    return asyncio.run(_catch_up(spec))
