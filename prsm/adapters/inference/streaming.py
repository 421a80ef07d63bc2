"""How a model replica batches a streamed answer's chunks on their way to the gateway."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TypeVar

from prsm.adapters.ray_compat import batched

T = TypeVar("T")

# Chunks sent one by one before batching starts: a chat stream's role chunk and first token.
UNBATCHED = 2


async def first_now_then_batched(
    generator: AsyncGenerator[T, None], interval_ms: float | None
) -> AsyncGenerator[list[T], None]:
    for _ in range(UNBATCHED):
        try:
            item = await anext(generator)
        except StopAsyncIteration:
            return
        yield [item]
    async for batch in batched(generator, interval_ms):
        yield list(batch)
