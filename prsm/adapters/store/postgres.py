"""The cluster event store and read views on PostgreSQL, through an asyncpg pool.

Appenders lock the one ``event_log_head`` row, so positions are gap-free and commit in order.
Transient errors (a dropped connection, a restarting server) are retried. An append whose
commit was in flight when the connection dropped is recognised on retry by its first event
id, so a retry never writes an event twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from prsm.adapters.store import migrations, rows
from prsm.adapters.store.codec import encode
from prsm.adapters.store.snapshot_codec import decode_state, encode_state
from prsm.domain.errors import ConcurrencyError, StoreUnavailable
from prsm.domain.events import TASK_EVENT_NAMES, RecordedEvent
from prsm.domain.registry_state import RegistryState
from prsm.observability.metrics import count_appended
from prsm.service_layer.ports import LogPage, StreamWrite
from prsm.service_layer.views import (
    TaskPage,
    TaskQuery,
    TaskView,
    ViewChanges,
    project_tasks,
)

T = TypeVar("T")
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
_VIEW = "task_view"
_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.InterfaceError,  # e.g. the connection was closed under the pool
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by a drop
    ConnectionError,
    OSError,
)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


def _same(value: datetime) -> datetime:
    return value


class PostgresStore:
    """Implements ``EventStore`` and ``TaskViews``."""

    def __init__(self, pool: asyncpg.Pool, retry_seconds: float) -> None:
        self._pool = pool
        self._retry_seconds = retry_seconds

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        retry_seconds: float = 30.0,
        application_name: str = "prsm",
    ) -> PostgresStore:
        settings = {"application_name": application_name}
        if schema:
            settings["search_path"] = schema
        try:
            if schema:
                conn = await asyncpg.connect(dsn)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                except asyncpg.UniqueViolationError:
                    pass  # another process created it at the same moment (IF NOT EXISTS races)
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=pool_size, server_settings=settings
            )
        except (*_TRANSIENT, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        store = cls(pool, retry_seconds)
        await store._retrying(store._migrate)
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _retrying(self, operation: Callable[[int], Awaitable[T]]) -> T:
        """Run ``operation(attempt)``, retrying transient errors with backoff."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_delay(self._retry_seconds),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await operation(attempt.retry_state.attempt_number)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction (the pool discards a connection that died)."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def _migrate(self, _attempt: int) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.prsm'))"
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations.load("postgres"):
                if migration.version not in applied:
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )

    async def applied_migrations(self) -> list[int]:
        found = await self._pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r[0] for r in found]

    async def ping(self) -> None:
        try:
            await self._pool.fetchval("SELECT 1")
        except (*_TRANSIENT, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    # -- event store ---------------------------------------------------------------------

    async def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        ids = [w.stream_id for w in writes]
        if len(set(ids)) != len(ids):
            raise ValueError("each stream may appear once per append")
        if not any(w.events for w in writes):
            return []
        encoded = [[encode(n) for n in w.events] for w in writes]
        first_id = next(e[0][0] for e in encoded if e)
        total = sum(len(e) for e in encoded)

        async def attempt(number: int) -> list[RecordedEvent]:
            async with self._transaction() as conn:
                head = await conn.fetchval(
                    "SELECT position FROM event_log_head WHERE id = 1 FOR UPDATE"
                )
                if number > 1 and await conn.fetchval(
                    "SELECT 1 FROM events WHERE event_id = $1", first_id
                ):
                    # The previous attempt committed before its connection dropped.
                    return await self._recorded_since(conn, first_id, total)
                found = await conn.fetch(
                    "SELECT stream_id, version FROM streams WHERE stream_id = ANY($1::text[])", ids
                )
                versions = {r["stream_id"]: r["version"] for r in found}
                for w in writes:
                    actual = versions.get(w.stream_id, 0)
                    if w.expected_version is not None and w.expected_version != actual:
                        raise ConcurrencyError(w.stream_id, w.expected_version, actual)
                out: list[RecordedEvent] = []
                columns: list[list[Any]] = [[] for _ in range(7)]
                for w, events in zip(writes, encoded, strict=True):
                    version = versions.get(w.stream_id, 0)
                    for new, row in zip(w.events, events, strict=True):
                        head += 1
                        version += 1
                        event_id, name, data, meta = row
                        for column, value in zip(
                            columns,
                            (head, event_id, w.stream_id, version, name, data, meta),
                            strict=True,
                        ):
                            column.append(value)
                        out.append(
                            RecordedEvent(w.stream_id, version, head, new.event, new.metadata)
                        )
                    versions[w.stream_id] = version
                await conn.execute(
                    "INSERT INTO events (position, event_id, stream_id, version, event_type,"
                    " data, metadata) SELECT p, i, s, v, t, d::jsonb, m::jsonb FROM unnest("
                    "$1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[],"
                    " $7::text[]) AS u(p, i, s, v, t, d, m)",
                    *columns,
                )
                await conn.execute(
                    "INSERT INTO streams SELECT * FROM unnest($1::text[], $2::int[])"
                    " ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
                    ids,
                    [versions[i] for i in ids],
                )
                await conn.execute("UPDATE event_log_head SET position = $1 WHERE id = 1", head)
                return out

        started = time.perf_counter()
        recorded = await self._retrying(attempt)
        count_appended(recorded, "postgres", time.perf_counter() - started)
        return recorded

    @staticmethod
    async def _recorded_since(conn: Conn, first_id: str, count: int) -> list[RecordedEvent]:
        """The ``count`` events of an append that starts with ``first_id`` (contiguous)."""
        found = await conn.fetch(
            f"SELECT {rows.EVENT_COLUMNS} FROM events"
            " WHERE position >= (SELECT position FROM events WHERE event_id = $1)"
            " ORDER BY position LIMIT $2",
            first_id,
            count,
        )
        return [rows.recorded(r) for r in found]

    async def read_stream(self, stream_id: str, after: int = 0) -> list[RecordedEvent]:
        async def attempt(_: int) -> list[RecordedEvent]:
            found = await self._pool.fetch(
                f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2"
                " ORDER BY version",
                stream_id, after,
            )  # fmt: skip
            return [rows.recorded(r) for r in found]

        return await self._retrying(attempt)

    async def save_snapshot(self, stream_id: str, state: RegistryState) -> None:
        text = encode_state(state)

        async def attempt(_: int) -> None:
            await self._pool.execute(
                "INSERT INTO snapshots (stream_id, version, state) VALUES ($1, $2, $3)"
                " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,"
                " state = excluded.state WHERE excluded.version > snapshots.version",
                stream_id, state.version, text,
            )  # fmt: skip

        await self._retrying(attempt)

    async def load_snapshot(self, stream_id: str) -> RegistryState | None:
        async def attempt(_: int) -> RegistryState | None:
            row = await self._pool.fetchrow(
                "SELECT version, state FROM snapshots WHERE stream_id = $1", stream_id
            )
            return None if row is None else decode_state(row["version"], row["state"])

        return await self._retrying(attempt)

    async def read_log(self, after: int, types: Collection[str], span: int = 2000) -> LogPage:
        async def attempt(_: int) -> LogPage:
            async with self._pool.acquire() as conn:
                return await self._read_log(conn, after, types, span)

        return await self._retrying(attempt)

    @staticmethod
    async def _read_log(conn: Conn, after: int, types: Collection[str], span: int) -> LogPage:
        # The committed head: appends commit in position order (the head row's lock).
        head = await conn.fetchval("SELECT position FROM event_log_head WHERE id = 1")
        end = max(after, min(after + span, head))
        found = await conn.fetch(
            f"SELECT {rows.LOGGED_COLUMNS} FROM events WHERE position > $1 AND position <= $2"
            " AND event_type = ANY($3::text[]) ORDER BY position",
            after,
            end,
            sorted(types),
        )
        return LogPage([rows.logged(r) for r in found], end, head > end)

    # -- task views ----------------------------------------------------------------------

    async def catch_up(self, batch: int = 2000) -> int:
        async def one_batch(_: int) -> LogPage:
            async with self._transaction() as conn:
                position = await conn.fetchval(
                    "SELECT position FROM projections WHERE name = $1 FOR UPDATE", _VIEW
                )
                page = await self._read_log(conn, position, TASK_EVENT_NAMES, batch)
                await self._apply_view(conn, project_tasks(page.events))
                await conn.execute(
                    "UPDATE projections SET position = $1 WHERE name = $2", page.position, _VIEW
                )
                return page

        applied = 0
        while True:
            page = await self._retrying(one_batch)
            applied += len(page.events)
            if not page.more:
                return applied

    @staticmethod
    async def _apply_view(conn: Conn, changes: ViewChanges) -> None:
        cols = ", ".join(rows.TASK_VIEW_COLUMNS)
        marks = ", ".join(f"${i + 1}" for i in range(len(rows.TASK_VIEW_COLUMNS)))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in rows.TASK_VIEW_COLUMNS[1:])
        await conn.executemany(
            f"INSERT INTO task_view ({cols}) VALUES ({marks})"
            f" ON CONFLICT (task_id) DO UPDATE SET {updates}",
            [rows.task_view_values(v, _same) for v in changes.new.values()],
        )
        for columns, values in rows.view_updates(changes.updates, _same).items():
            sets = ", ".join(f"{c} = ${i + 1}" for i, c in enumerate(columns))
            await conn.executemany(
                f"UPDATE task_view SET {sets} WHERE task_id = ${len(columns) + 1}", values
            )

    async def view_position(self) -> int:
        found = await self._pool.fetchval("SELECT position FROM projections WHERE name = $1", _VIEW)
        return int(found)

    async def get(self, task_id: str) -> TaskView | None:
        async def attempt(_: int) -> TaskView | None:
            row = await self._pool.fetchrow("SELECT * FROM task_view WHERE task_id = $1", task_id)
            return rows.task_view(row, _same) if row else None

        return await self._retrying(attempt)

    async def list(self, query: TaskQuery) -> TaskPage:
        sql = "SELECT * FROM task_view WHERE tenant_id = $1 AND user_id = $2"
        args: list[Any] = [query.tenant_id, query.user_id]
        if query.status is not None:
            args.append(query.status.value)
            sql += f" AND status = ${len(args)}"
        if query.before_seq is not None:
            args.append(query.before_seq)
            sql += f" AND seq < ${len(args)}"
        args.append(query.limit + 1)
        sql += f" ORDER BY seq DESC LIMIT ${len(args)}"

        async def attempt(_: int) -> TaskPage:
            found = [rows.task_view(r, _same) for r in await self._pool.fetch(sql, *args)]
            more = len(found) > query.limit
            found = found[: query.limit]
            return TaskPage(found, found[-1].seq if more else None)

        return await self._retrying(attempt)
