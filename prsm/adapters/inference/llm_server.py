"""What PRSM changes in Ray Serve LLM: the first streamed chunk leaves at once, and local
model directories are not "downloaded" before the engine starts.

``LLMServer`` batches a stream's chunks and sends a batch every 50 ms, the first one too, so
every streamed answer starts up to 50 ms late. ``PrsmLLMServer`` sends the first chunk as
soon as the engine yields it, then batches the rest as Ray does (fewer, larger messages
through the Serve handle). The Ray Serve LLM internals both rely on go through
``prsm.adapters.ray_compat``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from ray.serve.llm import LLMServer

from prsm.adapters.ray_compat import CallbackBase, StreamBatchingHook, batched

T = TypeVar("T")


class PrsmLLMServer(StreamBatchingHook, LLMServer):
    def batch_output_stream(
        self, generator: AsyncGenerator[T, None], interval_ms: float | None
    ) -> AsyncGenerator[list[T], None]:
        return first_now_then_batched(generator, interval_ms)


async def first_now_then_batched(
    generator: AsyncGenerator[T, None], interval_ms: float | None
) -> AsyncGenerator[list[T], None]:
    try:
        first = await anext(generator)
    except StopAsyncIteration:
        return
    yield [first]
    async for batch in batched(generator, interval_ms):
        yield list(batch)


class SkipDownloadForLocalWeights(CallbackBase):
    """Ray Serve LLM starts each replica with a Ray task per node that downloads the model
    (a fresh worker process importing torch and transformers) even when the source is a
    directory already on disk; for a local directory there is nothing to fetch, so skip it."""

    async def on_before_node_init(self) -> None:
        loading: Any = self.llm_config.model_loading_config
        source = getattr(loading, "model_source", None)
        if isinstance(source, str) and await asyncio.to_thread(os.path.isdir, source):
            self.ctx.run_init_node = False
