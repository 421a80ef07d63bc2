"""Skills that misbehave, shipped with tasks (``working_dir``) by the containment tests."""

from __future__ import annotations

import base64
import os
import random
import time

from prsm.skill import skill


def _check_value(x: float) -> None:
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")


def raises(x: float) -> float:
    _check_value(x)
    return x


@skill("faulty.hangs", timeout_s=2)
def hangs(x: float) -> float:
    time.sleep(3600)
    return x


def crashes(x: float) -> float:
    os._exit(1)


@skill("faulty.wrong_output", output_schema={"type": "object", "required": ["value"]})
def wrong_output(x: float) -> dict[str, float]:
    return {"valeu": x}


def big(megabytes: float) -> str:
    """``megabytes`` MB of seeded random bytes, base64-encoded."""
    data = random.Random(42).randbytes(int(megabytes * 2**20))
    return base64.b64encode(data).decode()


def where_am_i(x: float) -> dict[str, str]:
    return {
        "cwd_has_faulty": str(os.path.exists("faulty.py")),
        "env": os.environ.get("FLAVOUR", ""),
    }
