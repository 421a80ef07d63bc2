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
from datetime import datetime
from typing import Any

from prsm.domain.errors import RuntimeUnavailable
from prsm.domain.models import ModelCall, ModelTraffic
from prsm.domain.rollout_policy import VersionStats
from prsm.runtime import actors

log = logging.getLogger("prsm.rollouts")

NAME = "prsm-rollout-stats"
NAMESPACE = actors.NAMESPACE
FLUSH_S = 0.25
TRAFFIC_TIMEOUT_S = 5.0

SLACK_S = 10.0  # replicas' batches arrive out of order by about FLUSH_S: far less than this


class SampleWindows:
    """Recent calls per version; the figures of any window ending now."""

    def __init__(self, keep_s: float = 7200.0, max_per_version: int = 200_000) -> None:
        self._keep_s = keep_s
        self._max = max_per_version
        self._samples: dict[tuple[str, str, str], deque[ModelCall]] = {}

    def add(self, calls: list[ModelCall]) -> None:
        for call in calls:
            key = (call.tenant, call.model, call.version)
            window = self._samples.get(key)
            if window is None:
                window = self._samples[key] = deque(maxlen=self._max)
            window.append(call)
        horizon = time.time() - self._keep_s
        for window in self._samples.values():
            while window and window[0].at < horizon:
                window.popleft()

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        """A version's figures in its rollout since ``since``: the calls its split routed."""
        window = self._samples.get((tenant, model, version), deque())
        recent = [c for c in _since(window, since) if c.in_rollout]
        latencies = sorted(c.latency_ms for c in recent)
        errors = sum(1 for c in recent if not c.ok)
        return VersionStats(len(latencies), errors, _quantile(latencies, 0.95))

    def traffic(self, tenant: str, model: str, version: str, window_s: float,
                caller_tenant: str | None = None) -> ModelTraffic:  # fmt: skip
        """A version's calls over the last ``window_s`` seconds (only ``caller_tenant``'s, if
        given); over a shorter window if more came than are kept."""
        now = time.time()
        window = self._samples.get((tenant, model, version), deque())
        if len(window) == self._max and window[0].at > now - window_s:
            window_s = now - window[0].at
        recent = [c for c in _since(window, now - window_s)
                  if caller_tenant is None or c.caller_tenant == caller_tenant]  # fmt: skip
        firsts = sorted(c.ttft_ms for c in recent if c.ttft_ms is not None)
        return ModelTraffic(
            window_s=window_s,
            requests=len(recent),
            errors=sum(1 for c in recent if not c.ok),
            ttft_p50_ms=_quantile(firsts, 0.5),
            tokens_out=sum(c.tokens for c in recent),
        )


def _since(window: deque[ModelCall], since: float) -> list[ModelCall]:
    """The calls from ``since`` on, read from the newest back (a window is in arrival order,
    which is time order up to ``SLACK_S``)."""
    recent = []
    for call in reversed(window):
        if call.at < since - SLACK_S:
            break
        if call.at >= since:
            recent.append(call)
    return recent


def _quantile(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


class RolloutStats:
    """The actor: one ``SampleWindows`` for the whole cluster."""

    def __init__(self) -> None:
        self._windows = SampleWindows()

    def record(self, calls: list[ModelCall]) -> None:
        self._windows.add(calls)

    def stats(self, tenant: str, model: str, version: str, since: float) -> VersionStats:
        return self._windows.stats(tenant, model, version, since)

    def traffic(self, tenant: str, model: str, version: str, window_s: float,
                caller_tenant: str | None) -> ModelTraffic:  # fmt: skip
        return self._windows.traffic(tenant, model, version, window_s, caller_tenant)


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


async def traffic(tenant: str, model: str, version: str, window_s: float,
                  caller_tenant: str | None) -> ModelTraffic:  # fmt: skip
    """A version's traffic over the last ``window_s`` seconds, from the stats actor."""
    try:
        call = actor().traffic.remote(tenant, model, version, window_s, caller_tenant)
        result: ModelTraffic = await asyncio.wait_for(call, TRAFFIC_TIMEOUT_S)
    except Exception as exc:
        forget()
        raise RuntimeUnavailable("the traffic figures are not available right now") from exc
    return result


class StatsRecorder:
    """One per gateway replica: buffers samples, sends them in batches."""

    def __init__(self) -> None:
        self._buffer: list[ModelCall] = []
        self._flusher: asyncio.Task[None] | None = None

    def record(self, call: ModelCall) -> None:
        self._buffer.append(call)
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
