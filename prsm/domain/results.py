"""Outputs too large for an event: stored by content (sha256) in the result store, and held
in events, task records and later subtasks' inputs as a reference ``{"$result_ref":
"sha256:…", "bytes": n}``; a task whose result is large has it stored whole, its
``result_ref`` set."""

from __future__ import annotations

import re
from typing import Any

REF_KEY = "$result_ref"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def reference(digest: str, size: int) -> dict[str, Any]:
    return {REF_KEY: digest, "bytes": size}


def digest_of(value: Any) -> str | None:
    """The digest ``value`` refers to, if it is a reference."""
    if isinstance(value, dict) and len(value) == 2 and "bytes" in value:
        found = value.get(REF_KEY)
        return found if isinstance(found, str) and DIGEST.match(found) else None
    return None


def has_reference(value: Any) -> bool:
    """``value`` is a reference, or a list holding one (a later stage's or a reduce's input)."""
    if isinstance(value, list):
        return any(digest_of(v) is not None for v in value)
    return digest_of(value) is not None
