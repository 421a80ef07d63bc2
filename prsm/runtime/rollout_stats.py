"""Per-version request figures, gathered from every gateway replica: for canary rollouts and
for the console's model figures.

Each replica's ``StatsRecorder`` buffers one sample per routed model request and sends them
in batches (fire and forget, every quarter second) to one named, detached actor,
``prsm-rollout-stats``; the rollout controller asks it for a version's figures since its
step began, the gateway for a version's traffic over a recent window. Samples are kept for
``keep_s``, at most ``max_per_version`` per version; if the actor is lost, the figures start
again (a window with too few samples holds the rollout: it never advances on missing data)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prsm.domain.models import ModelTraffic
from prsm.domain.rollout_policy import VersionStats
from prsm.runtime import actors

log = logging.getLogger("prsm.rollouts")

NAME = "prsm-rollout-stats"
NAMESPACE = actors.NAMESPACE
FLUSH_S = 0.25

# (tenant, model, version, time.time() at the end of the request, latency ms, ok,
#  time to first token ms (None: failed before it), tokens generated)
Sample = tuple[str, str, str, float, float, bool, float | None, int]
# A kept sample: (at, latency ms, ok, time to first token ms, tokens generated)
_Kept = tuple[float, float, bool, float | None, int]


class SampleWindows:
    """Recent samples per version; the figures of any window ending now."""

    def __init__(self, keep_s: float = 7200.0, max_per_version: int = 200_000) -> None:
        self._keep_s = keep_s
        self._max = max_per_version
        self._samples: dict[tuple[str, str, str], deque[_Kept]] = {}

    def add(self, samples: list[Sample]) -> None:
        for tenant, model, version, at, latency_ms, ok, ttft_ms, tokens in samples:
            key = (tenant, model, version)
            window = self._samples.get(key)
            if window is None:
                window = self._samples[key] = deque(maxlen=self._max)
            window.append((at, latency_ms, ok, ttft_ms, tokens))
        horizon = time.time() - self._keep_s
        for window in self._samples.values():
            while window and window[0][0] < horizon:
                window.popleft()

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        window = self._samples.get((tenant, model, version), ())
        recent = _since(window, since)
        latencies = sorted(s[1] for s in recent)
        errors = sum(1 for s in recent if not s[2])
        return VersionStats(len(latencies), errors, _quantile(latencies, 0.95))

    def traffic(self, tenant: str, model: str, version: str, window_s: float) -> ModelTraffic:
        recent = _since(self._samples.get((tenant, model, version), ()), time.time() - window_s)
        firsts = sorted(s[3] for s in recent if s[3] is not None)
        return ModelTraffic(
            window_s=window_s,
            requests=len(recent),
            errors=sum(1 for s in recent if not s[2]),
            ttft_p50_ms=_quantile(firsts, 0.5),
            tokens_out=sum(s[4] for s in recent),
        )


def _since(window: Iterable[_Kept], since: float) -> list[_Kept]:
    """The samples from ``since`` on (all of them are looked at: replicas' batches arrive
    in any order)."""
    return [kept for kept in window if kept[0] >= since]


def _quantile(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


class RolloutStats:
    """The actor: one ``SampleWindows`` for the whole cluster."""

    def __init__(self) -> None:
        self._windows = SampleWindows()

    def record(self, samples: list[Sample]) -> None:
        self._windows.add(samples)

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        return self._windows.stats(tenant, model, version, since)

    def traffic(self, tenant: str, model: str, version: str, window_s: float) -> ModelTraffic:
        return self._windows.traffic(tenant, model, version, window_s)


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


async def traffic(tenant: str, model: str, version: str, window_s: float) -> ModelTraffic:
    """A version's traffic over the last ``window_s`` seconds, from the stats actor."""
    try:
        result: ModelTraffic = await actor().traffic.remote(tenant, model, version, window_s)
    except Exception:
        forget()
        raise
    return result


class StatsRecorder:
    """One per gateway replica: buffers samples, sends them in batches."""

    def __init__(self) -> None:
        self._buffer: list[Sample] = []
        self._flusher: asyncio.Task[None] | None = None

    def record(self, tenant: str, model: str, version: str, latency_ms: float, ok: bool,
               ttft_ms: float | None, tokens: int) -> None:  # fmt: skip
        self._buffer.append((tenant, model, version, time.time(), latency_ms, ok, ttft_ms, tokens))
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
