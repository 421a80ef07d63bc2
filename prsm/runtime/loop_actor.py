"""The shape of PRSM's long-running actors (model controller, scheduler, orchestrator): a
loop of passes on an event loop and thread of their own, started by the constructor, so that
an actor Ray restarts resumes without being asked. A subclass opens what it needs in
``_setup`` and does one pass in ``_pass``; ``wake()`` starts the next pass at once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from prsm.observability.logging import configure
from prsm.service_layer.ports import EventStore

log = logging.getLogger("prsm.runtime")

StoreBuilder = Callable[[dict[str, Any]], Awaitable[EventStore]]


class LoopActor:
    name = "loop"

    def __init__(self, build_store: StoreBuilder, settings: dict[str, Any],
                 interval_s: float = 0.05) -> None:  # fmt: skip
        if "log_level" in settings:  # PRSM's settings, as the actor gets them: JSON logs
            configure(str(settings["log_level"]))
        self._build_store = build_store
        self._settings = settings
        self._interval_s = interval_s
        self._store: EventStore | None = None
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._up = threading.Event()

    def _start(self) -> None:
        """Start the loop (the last line of a subclass's constructor)."""
        threading.Thread(target=self._loop.run_until_complete, args=(self._run(),),
                         daemon=True, name=self.name).start()  # fmt: skip

    def ready(self) -> bool:
        """Wait until the actor has opened its store and finished its setup."""
        return self._up.wait(timeout=300)

    def wake(self) -> None:
        """Start the next pass now rather than at the next interval."""
        self._loop.call_soon_threadsafe(self._wake.set)

    async def _setup(self) -> None:
        """What to do once the store is open, before the first pass."""

    async def _pass(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        self._store = await self._build_store(self._settings)
        await self._setup()
        # What the process holds now (Ray, imports, the store: some 300,000 objects) stays:
        # out of the collector's reach, a full collection walks only what came later.
        gc.freeze()
        self._up.set()
        while True:
            try:
                await self._pass()
            except Exception:  # keep going: the next pass starts again from the store
                log.exception("%s pass failed", self.name)
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
