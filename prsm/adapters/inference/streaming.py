"""How a model replica batches a streamed answer's chunks on their way to the gateway.

Ray Serve LLM sends a stream's chunks in batches, one every 50 ms (fewer, larger messages
through the Serve handle), the first ones too, so that an answer's first words reach the
client up to 50 ms late. Here each chunk leaves alone until one carries something the client
sees: text, a tool call or the end of a choice. Until then a stream holds the chat role chunk
and chunks of tokens that decode to no text yet (part of a character that takes several
tokens, frequent with byte-level vocabularies); batching starts after the first visible one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from prsm.adapters.ray_compat import batched

T = TypeVar("T")

# At most this many chunks leave alone before batching starts anyway.
MAX_UNBATCHED = 32


async def first_now_then_batched(
    generator: AsyncGenerator[T, None], interval_ms: float | None
) -> AsyncGenerator[list[T], None]:
    for _ in range(MAX_UNBATCHED):
        try:
            item = await anext(generator)
        except StopAsyncIteration:
            return
        yield [item]
        if shows_something(item):
            break
    async for batch in batched(generator, interval_ms):
        yield list(batch)


def shows_something(item: Any) -> bool:
    """Whether a streamed item gives the client anything to see. Streamed chunks come as
    ``data: {json}\\n\\n`` strings; anything else (an error, a whole response) ends the
    wait, as does a string that is not a chunk."""
    if not isinstance(item, str) or not item.startswith("data: {"):
        return True
    try:
        chunk = json.loads(item[6:])
    except ValueError:
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or choice.get("text") or delta.get("content"):
            return True
        if delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return not chunk.get("choices") and "usage" not in chunk
