"""The one module of private Ray APIs: it accepts only the Ray release it was written for, and
nothing else in PRSM touches a private Ray API."""

from __future__ import annotations

import json
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


def chunk(**delta: object) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    return f"data: {json.dumps({'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"


async def test_the_model_replica_sends_chunks_alone_until_one_shows_text_then_batches() -> None:
    from prsm.adapters.inference.streaming import MAX_UNBATCHED, first_now_then_batched

    role, empty, text = chunk(role="assistant", content=""), chunk(content=""), chunk(content="a")

    async def stream(items: list[str]) -> AsyncGenerator[str, None]:
        for item in items:
            yield item

    async def sent(items: list[str]) -> list[list[str]]:
        return [batch async for batch in first_now_then_batched(stream(items), None)]

    # The role chunk and tokens that decode to no text yet leave alone, and so does the
    # first chunk with text; the rest go in batches.
    assert await sent([role, text, text, text]) == [[role], [text], [text, text]]
    assert await sent([role, empty, empty, text, empty, text]) == [
        [role], [empty], [empty], [text], [empty, text]
    ]  # fmt: skip
    tool = chunk(tool_calls=[{"index": 0, "function": {"name": "f"}}])
    assert await sent([role, tool, text]) == [[role], [tool], [text]]
    assert await sent([role]) == [[role]]
    assert await sent([]) == []
    # A stream of nothing visible is batched after MAX_UNBATCHED chunks all the same.
    many = await sent([empty] * (MAX_UNBATCHED + 3))
    assert len(many) == MAX_UNBATCHED + 1 and many[-1] == [empty] * 3
