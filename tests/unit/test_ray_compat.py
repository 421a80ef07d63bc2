"""The one module of private Ray APIs: it accepts only the Ray release it was written for, and
nothing else in PRSM touches a private Ray API."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
import ray

from prsm.adapters import ray_compat

PRSM = Path(ray_compat.__file__).resolve().parents[1]
PRIVATE = re.compile(r"_private|_internal|_raylet|serve\._run|_blocking")


def test_the_installed_ray_is_the_supported_one() -> None:
    assert ray.__version__ == ray_compat.SUPPORTED_RAY
    ray_compat.check_ray_version(ray.__version__)


@pytest.mark.parametrize("installed", ["2.61.0", "2.59.2", "2.60.0rc1", "3.0.0.dev0"])
def test_another_ray_is_refused_with_both_versions_and_the_fix(installed: str) -> None:
    with pytest.raises(ray_compat.UnsupportedRayVersion) as raised:
        ray_compat.check_ray_version(installed)
    message = str(raised.value)
    assert f"supports ray=={ray_compat.SUPPORTED_RAY}" in message
    assert f"installed: ray {installed}." in message
    assert f"Install ray[serve,default,data]=={ray_compat.SUPPORTED_RAY}." in message
    assert isinstance(raised.value, RuntimeError)


def test_no_other_module_uses_a_private_ray_api() -> None:
    users = sorted(
        str(path.relative_to(PRSM.parent))
        for path in PRSM.rglob("*.py")
        if path != Path(ray_compat.__file__).resolve() and PRIVATE.search(path.read_text())
    )
    assert users == []


async def test_the_stream_batcher_gives_everything_at_once_without_an_interval() -> None:
    async def numbers() -> AsyncGenerator[int, None]:
        for i in range(5):
            yield i

    assert [batch async for batch in ray_compat.batched(numbers(), None)] == [[0, 1, 2, 3, 4]]


async def test_the_model_replica_sends_a_streams_first_two_chunks_at_once_then_batches() -> None:
    from prsm.adapters.inference.streaming import first_now_then_batched

    async def chunks(n: int) -> AsyncGenerator[int, None]:
        for i in range(n):
            yield i

    async def sent(n: int) -> list[list[int]]:
        return [batch async for batch in first_now_then_batched(chunks(n), None)]

    # A chat stream's role chunk and its first token leave alone; the rest in batches.
    assert await sent(5) == [[0], [1], [2, 3, 4]]
    assert await sent(1) == [[0]]
    assert await sent(0) == []
