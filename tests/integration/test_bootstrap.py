"""The composition root opens the store the settings name."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from prsm import bootstrap
from prsm.adapters.store.postgres import PostgresStore
from prsm.adapters.store.sqlite import SqliteStore
from prsm.config import Settings
from tests.conftest import drop_schema, require_postgres
from tests.support import POSTGRES_DSN


async def test_the_default_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = await bootstrap.open_store(settings)
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "prsm.db").exists()
    finally:
        await store.close()
    assert bootstrap.describe_store(settings) == f"sqlite://{tmp_path}/prsm.db"


async def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    store = await bootstrap.open_store(Settings(store_url=f"sqlite:///{tmp_path}/elsewhere.db"))
    await store.close()
    assert (tmp_path / "elsewhere.db").exists()


async def test_a_postgres_url_opens_postgres_in_its_schema() -> None:
    await require_postgres()
    schema = f"prsm_test_{uuid.uuid4().hex[:12]}"
    settings = Settings(store_url=POSTGRES_DSN, postgres_schema=schema)
    store = await bootstrap.open_store(settings)
    try:
        assert isinstance(store, PostgresStore)
        assert await store.applied_migrations() == [1, 2, 3]
    finally:
        await store.close()
        await drop_schema(schema)
    described = bootstrap.describe_store(Settings(store_url="postgresql://u:secret@db:5432/prsm"))
    assert described == "postgresql://…@db:5432/prsm"


async def test_an_unknown_store_url_is_refused() -> None:
    with pytest.raises(ValueError, match="PRSM_STORE_URL"):
        await bootstrap.open_store(Settings(store_url="mysql://db/prsm"))
