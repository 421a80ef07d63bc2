"""Per-version request figures for canary rollouts, gathered from every gateway replica.

Each replica's ``StatsRecorder`` buffers one sample per routed request of a model that has a
rollout in progress and sends them in batches (fire and forget, every quarter second) to one
named, detached actor, ``prsm-rollout-stats``; the rollout controller asks it for a version's
figures since its step began. Samples are kept for ``keep_s``, at most ``max_per_version``
per version; if the actor is lost, the figures start again (a window with too few samples
holds the rollout: it never advances on missing data)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from datetime import datetime
from typing import Any

from prsm.domain.rollout_policy import VersionStats
from prsm.runtime import actors

log = logging.getLogger("prsm.rollouts")

NAME = "prsm-rollout-stats"
NAMESPACE = actors.NAMESPACE
FLUSH_S = 0.25

# (tenant, model, version, time.time() at the end of the request, latency ms, ok)
Sample = tuple[str, str, str, float, float, bool]


class SampleWindows:
    """Recent samples per version; the figures of any window ending now."""

    def __init__(self, keep_s: float = 7200.0, max_per_version: int = 200_000) -> None:
        self._keep_s = keep_s
        self._max = max_per_version
        self._samples: dict[tuple[str, str, str], deque[tuple[float, float, bool]]] = {}

    def add(self, samples: list[Sample]) -> None:
        for tenant, model, version, at, latency_ms, ok in samples:
            key = (tenant, model, version)
            window = self._samples.get(key)
            if window is None:
                window = self._samples[key] = deque(maxlen=self._max)
            window.append((at, latency_ms, ok))
        horizon = time.time() - self._keep_s
        for window in self._samples.values():
            while window and window[0][0] < horizon:
                window.popleft()

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        window = self._samples.get((tenant, model, version), ())
        latencies = sorted(ms for at, ms, _ in window if at >= since)
        errors = sum(1 for at, _, ok in window if at >= since and not ok)
        if not latencies:
            return VersionStats(0, 0, None)
        p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]
        return VersionStats(len(latencies), errors, p95)


class RolloutStats:
    """The actor: one ``SampleWindows`` for the whole cluster."""

    def __init__(self) -> None:
        self._windows = SampleWindows()

    def record(self, samples: list[Sample]) -> None:
        self._windows.add(samples)

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        return self._windows.stats(tenant, model, version, since)


_handle: Any = None


def actor() -> Any:
    """Get or create the stats actor (the handle is kept: Ray restarts the actor behind it)."""
    global _handle
    if _handle is None:
        _handle = _get_or_create()
    return _handle


def forget() -> None:
    """Drop the kept handle (after a failed call): the next call looks the actor up again."""
    global _handle
    _handle = None


def _get_or_create() -> Any:
    return actors.singleton(RolloutStats, NAME)


async def version_stats(tenant: str, model: str, version: str, since: datetime) -> VersionStats:
    """A version's figures since ``since``, from the stats actor (the controller's source)."""
    try:
        result: VersionStats = await actor().stats.remote(tenant, model, version, since.timestamp())
    except Exception:
        forget()
        raise
    return result


class StatsRecorder:
    """One per gateway replica: buffers samples, sends them in batches."""

    def __init__(self) -> None:
        self._buffer: list[Sample] = []
        self._flusher: asyncio.Task[None] | None = None

    def record(self, tenant: str, model: str, version: str, latency_ms: float, ok: bool) -> None:
        self._buffer.append((tenant, model, version, time.time(), latency_ms, ok))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._buffer:
            await asyncio.sleep(FLUSH_S)
            batch, self._buffer = self._buffer, []
            try:
                await actor().record.remote(batch)
            except Exception:  # this batch is lost: the window just has fewer samples
                forget()
                log.warning("could not send %d rollout samples", len(batch), exc_info=True)

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
