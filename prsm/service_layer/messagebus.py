"""The message bus: routes a command to its handler, then brings the read views up to date
so that the caller reads its own writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prsm.domain.commands import Command
from prsm.domain.skills import SkillCatalog
from prsm.service_layer.handlers import HANDLERS
from prsm.service_layer.ports import Clock, EventStore, Packages, TaskViews
from prsm.service_layer.unit_of_work import Context

T = TypeVar("T")


class MessageBus:
    def __init__(self, store: EventStore, views: TaskViews, clock: Clock, source: str,
                 skills: SkillCatalog, packages: Packages | None = None) -> None:  # fmt: skip
        self._views = views
        self.skills = skills  # the installed ones
        self._context = Context(store=store, clock=clock, source=source, skills=skills,
                                packages=packages)  # fmt: skip

    async def handle(self, command: Command) -> Any:
        result, _ = await self.handle_then(command, _nothing)
        return result

    async def handle_then(self, command: Command,
                          then: Callable[[Any], Awaitable[T]]) -> tuple[Any, T]:  # fmt: skip
        """Handle ``command``, then run ``then(result)`` while the read views catch up: the
        caller's own follow-up (e.g. asking the scheduler where new tasks stand) does not
        wait for them. Both are done when this returns."""
        result = await HANDLERS[type(command)](command, self._context)
        _, after = await asyncio.gather(self._views.catch_up(), then(result))
        return result, after


async def _nothing(_: Any) -> None:
    return None
