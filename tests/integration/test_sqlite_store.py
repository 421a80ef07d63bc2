"""The SQLite store's own behaviour, beyond the contract every store keeps
(``test_store_contract.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from prsm.adapters.store.sqlite import SqliteStore


async def test_a_sqlite_store_opens_while_another_writer_holds_a_new_file(tmp_path: Path) -> None:
    """The actors of ``prsm up`` open the embedded store together, the first time on a new
    file. SQLite refuses a switch to WAL at once, without waiting, while another connection
    holds the write lock of a file not yet in WAL: opening waits until it is free."""
    path = tmp_path / "prsm.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE made_by_another_writer (a)")
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.5, other.execute, "COMMIT")
    store = await SqliteStore.open(path)
    try:
        assert await store.applied_migrations() == [1, 2, 3]
        with contextlib.closing(sqlite3.connect(path)) as fresh:
            assert fresh.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await store.close()
        other.close()
