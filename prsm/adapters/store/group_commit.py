"""Group commit: writes that arrive while a transaction is being written wait for it, then go
into the next transaction together — one hold of the write lock and one sync to disk for all of
them, instead of one each. A write that arrives when none is in flight starts at once, so a
lone caller waits for nothing. Each write keeps its own outcome: the group's writer returns a
result or an exception per write; if the whole transaction fails (nothing in it committed)
through one write's fault, each is tried again alone, so that write fails no other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

W = TypeVar("W")
R = TypeVar("R")

WriteGroup = Callable[[list[W]], Awaitable[list[R | Exception]]]


class GroupCommit(Generic[W, R]):
    def __init__(self, write_group: WriteGroup[W, R],
                 nobodys_fault: tuple[type[Exception], ...] = ()) -> None:  # fmt: skip
        """``nobodys_fault``: errors of the store itself (e.g. locked, out of disk), which
        fail the whole group as they are: trying each write alone would fail the same."""
        self._write_group = write_group
        self._nobodys_fault = nobodys_fault
        self._waiting: list[tuple[W, asyncio.Future[R]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, item: W) -> R:
        """Write ``item`` with whatever else is waiting; its own result or exception."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_all())
        return await done

    async def _write_all(self) -> None:
        group: list[tuple[W, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                # A caller that gave up (cancelled) before its group started is left out.
                group, self._waiting = [(w, f) for w, f in self._waiting if not f.done()], []
                if not group:
                    continue
                results = await self._each_or_alone([w for w, _ in group])
                for (_, done), result in zip(group, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
                group = []
        finally:  # (anything left here: this task itself was cancelled)
            self._writing = None
            stranded, self._waiting = group + self._waiting, []
            for _, done in stranded:
                done.cancel()

    async def _each_or_alone(self, items: list[W]) -> list[R | Exception]:
        try:
            return await self._write_group(items)
        except Exception as exc:  # the transaction failed: nothing in it was written
            if len(items) == 1 or isinstance(exc, self._nobodys_fault):
                return [exc] * len(items)
        # Whose fault was it? Each alone, so that one bad write fails no other.
        return [(await self._each_or_alone([item]))[0] for item in items]
