"""The message bus: routes a command to its handler, then brings the read views up to date
so that the caller reads its own writes."""

from __future__ import annotations

from typing import Any

from prsm.domain.commands import Command
from prsm.service_layer.handlers import HANDLERS
from prsm.service_layer.ports import Clock, EventStore, TaskViews
from prsm.service_layer.unit_of_work import Context


class MessageBus:
    def __init__(self, store: EventStore, views: TaskViews, clock: Clock, source: str) -> None:
        self._views = views
        self._context = Context(store=store, clock=clock, source=source)

    async def handle(self, command: Command) -> Any:
        handler = HANDLERS[type(command)]
        result = await handler(command, self._context)
        await self._views.catch_up()
        return result
