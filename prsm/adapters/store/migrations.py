"""Versioned SQL migrations, one folder per dialect: ``migrations/<dialect>/NNNN_name.sql``.

Each adapter applies the ones not yet recorded in ``schema_migrations``, in order, inside a
transaction that also holds the database's migration lock, so concurrent starters apply each
migration once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources
from typing import Literal


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The migration split into single statements (SQLite runs one at a time)."""
        out: list[str] = []
        current = ""
        for line in self.sql.splitlines(keepends=True):
            current += line
            if sqlite3.complete_statement(current):
                out.append(current.strip())
                current = ""
        if current.strip():
            raise ValueError(f"migration {self.name}: incomplete statement {current.strip()!r}")
        return out


def load(dialect: Literal["sqlite", "postgres"]) -> list[Migration]:
    folder = resources.files("prsm.adapters.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations must be numbered 1..n, got {versions}")
    return found
