"""The embedded event store and read views on one SQLite file.

Several processes may share the file (gateway replicas, actors): WAL journal (each opening
waits out the others that switch a new file to it), a busy timeout, and writers that take
SQLite's write lock up front (``BEGIN IMMEDIATE``), so positions are assigned and committed
one writer at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from prsm.adapters.store import migrations, rows
from prsm.adapters.store.codec import encode
from prsm.adapters.store.group_commit import GroupCommit
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

BUSY_TIMEOUT_MS = 60_000
CACHE_KIB = 65_536  # per connection
_CHUNK = 500  # ids per IN (...) list
_VIEW = "task_view"


Appended = list[RecordedEvent] | Exception


def _recorded(writes: Sequence[StreamWrite], versions: dict[str, int],
              head: int) -> tuple[list[RecordedEvent], list[tuple[Any, ...]]]:  # fmt: skip
    """One append's events as recorded after position ``head`` and stream ``versions``, and
    their rows; ConcurrencyError if an expected version does not hold."""
    for w in writes:
        actual = versions.get(w.stream_id, 0)
        if w.expected_version is not None and w.expected_version != actual:
            raise ConcurrencyError(w.stream_id, w.expected_version, actual)
    out: list[RecordedEvent] = []
    event_rows: list[tuple[Any, ...]] = []
    for w in writes:
        version = versions.get(w.stream_id, 0)
        for new in w.events:
            head += 1
            version += 1
            event_id, name, data, meta = encode(new)
            event_rows.append((head, event_id, w.stream_id, version, name, data, meta))
            out.append(RecordedEvent(w.stream_id, version, head, new.event, new.metadata))
    return out, event_rows


def _dt(value: datetime) -> str:
    return value.isoformat()


async def _fetch(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, args))


async def _set_wal(conn: aiosqlite.Connection) -> None:
    """Put the file in WAL mode, waiting out other processes that open it at the same moment.

    SQLite answers "database is locked" to a journal-mode change at once, without its busy
    handler, when waiting could deadlock; several processes opening a new file hit that.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await _set_wal(conn)
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # random-key indexes need pages
    return conn


class SqliteStore:
    """Implements ``EventStore`` and ``TaskViews``."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._appends = GroupCommit(self._append_group, (sqlite3.OperationalError,))
        self._catch_ups = GroupCommit(self._catch_up_group, (sqlite3.OperationalError,))

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        store = cls(writer, await _connect(path))
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self._transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {r[0] for r in await _fetch(db, "SELECT version FROM schema_migrations")}
            for migration in migrations.load("sqlite"):
                if migration.version in applied:
                    continue
                for statement in migration.statements():
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )

    async def applied_migrations(self) -> list[int]:
        found = await _fetch(self._reader, "SELECT version FROM schema_migrations")
        return sorted(r[0] for r in found)

    async def ping(self) -> None:
        try:
            await _fetch(self._reader, "SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc

    # -- event store ---------------------------------------------------------------------

    async def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """All of ``writes`` or none. Appends made while another is being written go into
        the next transaction together (``GroupCommit``): one fsync for all of them."""
        ids = [w.stream_id for w in writes]
        if len(set(ids)) != len(ids):
            raise ValueError("each stream may appear once per append")
        if not any(w.events for w in writes):
            return []
        started = time.perf_counter()
        out = await self._appends.write(list(writes))
        count_appended(out, "sqlite", time.perf_counter() - started)
        return out

    async def _append_group(self, group: list[list[StreamWrite]]) -> list[Appended]:
        """Each append in order, in one transaction: the ones whose expected versions hold
        (after the appends before them) are written; a ConcurrencyError for each other."""
        async with self._transaction() as db:
            versions = await self._versions(db, sorted({w.stream_id for ws in group for w in ws}))
            cursor = await db.execute("SELECT coalesce(max(position), 0) FROM events")
            head = (await cursor.fetchone() or (0,))[0]
            results: list[Appended] = []
            event_rows: list[tuple[Any, ...]] = []
            for writes in group:
                try:
                    out, rows_of = _recorded(writes, versions, head)
                except ConcurrencyError as exc:
                    results.append(exc)
                    continue
                head += len(out)
                versions |= {w.stream_id: versions.get(w.stream_id, 0) + len(w.events)
                             for w in writes}  # fmt: skip
                event_rows += rows_of
                results.append(out)
            await db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", event_rows)
            await db.executemany(
                "INSERT INTO streams VALUES (?, ?)"
                " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
                list(versions.items()),
            )
        return results

    @staticmethod
    async def _versions(db: aiosqlite.Connection, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT stream_id, version FROM streams WHERE stream_id IN ({marks})"
            found.update({r[0]: r[1] for r in await _fetch(db, sql, chunk)})
        return found

    async def read_stream(self, stream_id: str, after: int = 0) -> list[RecordedEvent]:
        found = await _fetch(
            self._reader,
            f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ?"
            " ORDER BY version",
            (stream_id, after),
        )
        return [rows.recorded(r) for r in found]

    async def save_snapshot(self, stream_id: str, state: RegistryState) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO snapshots (stream_id, version, state) VALUES (?, ?, ?)"
                " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,"
                " state = excluded.state WHERE excluded.version > snapshots.version",
                (stream_id, state.version, encode_state(state)),
            )

    async def load_snapshot(self, stream_id: str) -> RegistryState | None:
        found = await _fetch(
            self._reader, "SELECT version, state FROM snapshots WHERE stream_id = ?", (stream_id,)
        )
        return decode_state(found[0][0], found[0][1]) if found else None

    async def read_log(self, after: int, types: Collection[str], span: int = 2000) -> LogPage:
        return await self._read_log(self._reader, after, types, span)

    @staticmethod
    async def _read_log(db: aiosqlite.Connection, after: int, types: Collection[str],
                        span: int) -> LogPage:  # fmt: skip
        # Positions up to the head read first are all committed (writers commit in order).
        head = (await _fetch(db, "SELECT coalesce(max(position), 0) FROM events"))[0][0]
        end = max(after, min(after + span, head))
        names = sorted(types)
        found = await _fetch(
            db,
            f"SELECT {rows.LOGGED_COLUMNS} FROM events WHERE position > ? AND position <= ?"
            f" AND event_type IN ({','.join('?' * len(names))}) ORDER BY position",
            (after, end, *names),
        )
        return LogPage([rows.logged(r) for r in found], end, head > end)

    # -- task views ----------------------------------------------------------------------

    async def catch_up(self, batch: int = 2000) -> int:
        """Bring the task view up to the log; how many events this call applied. Calls made
        while one runs share the next run, which starts after it (so it sees every write its
        callers made before calling); the first of them is said to have applied them."""
        return await self._catch_ups.write(batch)

    async def _catch_up_group(self, batches: list[int]) -> list[int | Exception]:
        applied: list[int | Exception] = [await self._catch_up(min(batches))]
        return applied + [0] * (len(batches) - 1)

    async def _catch_up(self, batch: int) -> int:
        applied = 0
        while True:
            pending = await _fetch(
                self._reader,
                "SELECT (SELECT coalesce(max(position), 0) FROM events)"
                " > (SELECT position FROM projections WHERE name = ?)",
                (_VIEW,),
            )
            if not pending or not pending[0][0]:
                return applied
            async with self._transaction() as db:
                found = await _fetch(
                    db, "SELECT position FROM projections WHERE name = ?", (_VIEW,)
                )
                page = await self._read_log(db, found[0][0], TASK_EVENT_NAMES, batch)
                await self._apply_view(db, project_tasks(page.events))
                await db.execute(
                    "UPDATE projections SET position = ? WHERE name = ?", (page.position, _VIEW)
                )
                applied += len(page.events)

    @staticmethod
    async def _apply_view(db: aiosqlite.Connection, changes: ViewChanges) -> None:
        marks = ",".join("?" * len(rows.TASK_VIEW_COLUMNS))
        await db.executemany(
            f"INSERT OR REPLACE INTO task_view VALUES ({marks})",
            [rows.task_view_values(v, _dt) for v in changes.new.values()],
        )
        for columns, values in rows.view_updates(changes.updates, _dt).items():
            sets = ", ".join(f"{c} = ?" for c in columns)
            await db.executemany(f"UPDATE task_view SET {sets} WHERE task_id = ?", values)

    async def view_position(self) -> int:
        found = await _fetch(
            self._reader, "SELECT position FROM projections WHERE name = ?", (_VIEW,)
        )
        return int(found[0][0])

    async def get(self, task_id: str) -> TaskView | None:
        found = await _fetch(self._reader, "SELECT * FROM task_view WHERE task_id = ?", (task_id,))
        return rows.task_view(found[0], datetime.fromisoformat) if found else None

    async def list(self, query: TaskQuery) -> TaskPage:
        sql = "SELECT * FROM task_view WHERE tenant_id = ? AND user_id = ?"
        args: list[Any] = [query.tenant_id, query.user_id]
        if query.status is not None:
            sql += " AND status = ?"
            args.append(query.status.value)
        if query.before_seq is not None:
            sql += " AND seq < ?"
            args.append(query.before_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(query.limit + 1)
        found = [
            rows.task_view(r, datetime.fromisoformat) for r in await _fetch(self._reader, sql, args)
        ]
        more = len(found) > query.limit
        found = found[: query.limit]
        return TaskPage(found, found[-1].seq if more else None)
