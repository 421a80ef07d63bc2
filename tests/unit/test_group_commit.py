"""Group commit: writes made while one is in flight go in the next group together; each keeps
its own result; one write's failure fails no other; a lone write waits for nothing."""

from __future__ import annotations

import asyncio

import pytest

from prsm.adapters.store.group_commit import GroupCommit


class Locked(Exception):
    """The store's own failure: nobody's fault."""


class Writer:
    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.locked = False

    async def write(self, group: list[int]) -> list[int | Exception]:
        self.groups.append(list(group))
        await asyncio.sleep(0.01)  # the transaction takes a while
        if self.locked:
            raise Locked("database is locked")
        if -1 in group:  # a write that cannot be stored fails its whole transaction
            raise ValueError("cannot encode -1")
        return [ValueError(f"{n} is odd") if n % 2 else n * 10 for n in group]


async def test_writes_made_while_one_is_in_flight_go_in_the_next_group() -> None:
    writer = Writer()
    commit = GroupCommit(writer.write)
    first = asyncio.create_task(commit.write(0))
    await asyncio.sleep(0)  # the first starts alone, at once
    rest = [asyncio.create_task(commit.write(n)) for n in (2, 4, 6)]
    assert [await first] == [0]
    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert writer.groups == [[0], [2, 4, 6]]


async def test_each_write_keeps_its_own_error() -> None:
    commit = GroupCommit(Writer().write)
    results = await asyncio.gather(*(commit.write(n) for n in (2, 3, 4)), return_exceptions=True)
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError) and "3 is odd" in str(results[1])


async def test_a_write_that_fails_the_transaction_fails_alone() -> None:
    writer = Writer()
    commit = GroupCommit(writer.write)
    results = await asyncio.gather(*(commit.write(n) for n in (2, -1, 4)), return_exceptions=True)
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError) and "cannot encode -1" in str(results[1])
    assert writer.groups == [[2, -1, 4], [2], [-1], [4]]  # the group, then each alone


async def test_a_failure_of_the_store_fails_the_group_without_retrying_each() -> None:
    writer = Writer()
    writer.locked = True
    commit = GroupCommit(writer.write, nobodys_fault=(Locked,))
    results = await asyncio.gather(*(commit.write(n) for n in (2, 4)), return_exceptions=True)
    assert all(isinstance(r, Locked) for r in results)
    assert writer.groups == [[2, 4]]


async def test_a_caller_that_gives_up_is_left_out_and_the_rest_go_on() -> None:
    writer = Writer()
    commit = GroupCommit(writer.write)
    first = asyncio.create_task(commit.write(0))
    await asyncio.sleep(0)
    gone = asyncio.create_task(commit.write(2))
    kept = asyncio.create_task(commit.write(4))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == 0 and await kept == 40
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert writer.groups == [[0], [4]]
