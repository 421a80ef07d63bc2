"""The audit log: every authentication and authorisation decision, appended to the
``audit`` stream in batches (a request never waits for the store), and read back with
filters for admins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.service_layer.ports import EventStore, StreamWrite

FLUSH_S = 0.5
log = logging.getLogger("prsm.audit")


class AuditLog:
    """One per gateway replica. ``record`` buffers; a background task appends every
    ``FLUSH_S`` (the stream is written without a version check, so replicas never conflict)."""

    def __init__(self, store: EventStore, source: str = "gateway") -> None:
        self._store = store
        self._source = source
        self._buffer: list[ev.AccessDecided] = []
        self._flusher: asyncio.Task[None] | None = None
        self.lost = 0  # entries a failing store did not take (also counted in the metrics)

    def record(self, entry: ev.AccessDecided) -> None:
        self._buffer.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_S)
        with contextlib.suppress(Exception):  # logged and counted by flush
            await self.flush()

    async def flush(self) -> None:
        """Append what is buffered now."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        events = [
            ev.NewEvent(
                e,
                ev.EventMetadata(
                    occurred_at=e.at, source=self._source, correlation_id=e.correlation_id
                ),
            )
            for e in batch
        ]
        try:
            await self._store.append([StreamWrite(streams.AUDIT, None, events)])
        except Exception:
            self.lost += len(batch)
            log.exception("could not append %d audit entries", len(batch))
            raise

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        with contextlib.suppress(Exception):
            await self.flush()


@dataclass(frozen=True)
class AuditQuery:
    user_id: str | None = None
    tenant_id: str | None = None
    allowed: bool | None = None
    route: str | None = None
    since: datetime | None = None
    limit: int = 100


async def read_audit(store: EventStore, query: AuditQuery) -> list[ev.AccessDecided]:
    """Matching entries, newest first."""
    out: list[ev.AccessDecided] = []
    for record in reversed(await store.read_stream(streams.AUDIT)):
        e = record.event
        if not isinstance(e, ev.AccessDecided):
            continue
        if (
            (query.since is None or e.at >= query.since)
            and (query.user_id is None or e.user_id == query.user_id)
            and (query.tenant_id is None or e.tenant_id == query.tenant_id)
            and (query.allowed is None or e.allowed == query.allowed)
            and (query.route is None or e.route == query.route)
        ):
            out.append(e)
            if len(out) >= query.limit:
                break
    return out
