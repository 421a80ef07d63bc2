"""Identifiers of events, commands and tasks: UUIDv7, time-ordered so that the indexes they
key grow at one end, from uuid-utils (no system call per id; reseeded in a forked child)."""

from __future__ import annotations

from uuid_utils import uuid7


def new_id() -> str:
    return str(uuid7())
