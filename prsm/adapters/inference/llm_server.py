"""Ray Serve LLM's ``LLMServer``, with one change: the first streamed chunk leaves at once.

``LLMServer`` batches a stream's chunks and sends a batch every 50 ms, the first one too, so
every streamed answer starts up to 50 ms late. ``PrsmLLMServer`` sends the first chunk as
soon as the engine yields it, then batches the rest as Ray does (fewer, larger messages
through the Serve handle)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from ray.llm._internal.serve.utils.batcher import Batcher
from ray.serve.llm import LLMServer

T = TypeVar("T")


class PrsmLLMServer(LLMServer):
    def _batch_output_stream(self, generator: AsyncGenerator[T, None]) -> AsyncGenerator[Any, None]:
        return first_now_then_batched(generator, self._get_batch_interval_ms())


async def first_now_then_batched(
    generator: AsyncGenerator[T, None], interval_ms: float | None
) -> AsyncGenerator[list[T], None]:
    try:
        first = await anext(generator)
    except StopAsyncIteration:
        return
    yield [first]
    async for batch in Batcher(generator, interval_ms=interval_ms).stream():
        yield list(batch)
