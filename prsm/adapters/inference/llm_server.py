"""What PRSM changes in Ray Serve LLM: a streamed answer's first words leave at once, local
model directories are not "downloaded" before the engine starts, a CPU engine of one worker
runs it in its own process (see ``ray_compat.InProcessWorkerHook``),
and each request leaves one JSON log line (PRSM's format) with its id.

``LLMServer`` batches a stream's chunks and sends a batch every 50 ms, the first one too, so
every streamed answer starts up to 50 ms late. ``PrsmLLMServer`` sends each chunk as soon as
the engine yields it until the first that shows the client something (see
``prsm.adapters.inference.streaming``), then batches the rest as Ray does (fewer, larger
messages through the Serve handle). Each chat or completion request is logged once, under
its Serve request id: the id of the PRSM request it serves (the gateway's, or the task's
whose agent calls the model). The Ray Serve LLM internals these rely on go through
``prsm.adapters.ray_compat``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ray.serve.llm import LLMServer

from prsm.adapters.inference.autoscaling import DirectLoad
from prsm.adapters.inference.direct_http import DirectApp, serve
from prsm.adapters.inference.streaming import first_now_then_batched
from prsm.adapters.ray_compat import (
    CallbackBase,
    InProcessWorkerHook,
    StreamBatchingHook,
    serve_request_id,
)
from prsm.domain.models import ModelCall
from prsm.observability.logging import configure, correlated

T = TypeVar("T")

log = logging.getLogger("prsm.model")
# Serve stops a replica for good 20 s after asking it to (graceful_shutdown_timeout_s).
DRAIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DirectOptions:
    app: str  # the replica's Serve application
    key: bytes  # of the gateway's grants
    record: Callable[[ModelCall], None] | None = None  # each call's figures (rollout stats)


class PrsmLLMServer(DirectLoad, InProcessWorkerHook, StreamBatchingHook, LLMServer):
    """``direct``: how the replica answers HTTP itself (``direct_http``): its Serve
    application's name, the key of the gateway's grants and where each call's figures go;
    None: it answers only through Serve handles. Serve scales an autoscaled version by
    both (``autoscaling``)."""

    async def __init__(self, llm_config: Any, *, log_level: str = "INFO",  # type: ignore[misc]
                       direct: DirectOptions | None = None, **options: Any) -> None:  # fmt: skip
        configure(log_level)
        await super().__init__(llm_config, **options)
        self._direct, self._listening = None, None
        if direct is not None:
            self._direct = DirectApp(self.engine, llm_config.model_id, direct.app, direct.key,
                                     direct.record)  # fmt: skip
            self._listening = await serve(self._direct)
            log.info("answering HTTP at %s", self._listening.address)

    async def direct_address(self) -> str:
        """``host:port`` of this replica's own HTTP server ("": it has none)."""
        return self._listening.address if self._listening is not None else ""

    async def __del__(self) -> None:
        """On a graceful stop (Serve no longer routes here: the version is undeployed or
        scaled down), take no new request on this replica's own server and let the answers
        it is streaming finish before the engine stops (within Serve's shutdown timeout)."""
        listening = getattr(self, "_listening", None)  # None too if the constructor failed
        if listening is not None and not await listening.stop(DRAIN_TIMEOUT_S):
            log.warning("stopping with %d direct answers unfinished", listening.app.active)
        await super().__del__()

    async def chat(self, request: Any, raw_request_info: Any = None) -> Any:
        log_request("chat", request)
        return await super().chat(request, raw_request_info)

    async def completions(self, request: Any, raw_request_info: Any = None) -> Any:
        log_request("completions", request)
        return await super().completions(request, raw_request_info)

    def batch_output_stream(
        self, generator: AsyncGenerator[T, None], interval_ms: float | None
    ) -> AsyncGenerator[list[T], None]:
        return first_now_then_batched(generator, interval_ms)


def log_request(endpoint: str, request: Any) -> None:
    """One line for a request reaching the model, under the request's Serve id."""
    with correlated(serve_request_id()):
        log.info("%s request for %s (stream: %s)", endpoint, getattr(request, "model", None),
                 bool(getattr(request, "stream", False)))  # fmt: skip


class SkipDownloadForLocalWeights(CallbackBase):
    """Ray Serve LLM starts each replica with a Ray task per node that downloads the model
    (a fresh worker process importing torch and transformers) even when the source is a
    directory already on disk; for a local directory there is nothing to fetch, so skip it."""

    async def on_before_node_init(self) -> None:
        loading: Any = self.llm_config.model_loading_config
        source = getattr(loading, "model_source", None)
        if isinstance(source, str) and await asyncio.to_thread(os.path.isdir, source):
            self.ctx.run_init_node = False
