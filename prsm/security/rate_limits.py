"""Token buckets per principal and class of route: in-process by default, in Redis (one
atomic script per take, so every gateway replica and process shares each bucket exactly)
when ``PRSM_REDIS_URL`` is set (each replica leases a few tokens per call, see
``MAX_LEASE``). If Redis cannot be reached the limiter lets requests through
or refuses them (503), as configured; either way it logs and counts it."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from prsm.domain.errors import InvalidRequest, RateLimited, RateLimiterUnavailable
from prsm.domain.identity import Principal
from prsm.observability import metrics

log = logging.getLogger("prsm.ratelimit")


@dataclass(frozen=True)
class Bucket:
    rate_per_s: float
    burst: int


def parse_limits(text: str) -> dict[str, Bucket]:
    """``"inference=5/20,tasks=20/50,reads=50/100"``: per class, tokens per second / burst."""
    limits: dict[str, Bucket] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, spec = part.partition("=")
        rate, _, burst = spec.partition("/")
        try:
            bucket = Bucket(float(rate), int(burst))
        except ValueError:
            raise InvalidRequest(f"rate limit {part!r}: expected CLASS=RATE/BURST") from None
        if not name.strip() or bucket.rate_per_s <= 0 or bucket.burst < 1:
            raise InvalidRequest(f"rate limit {part!r}: rate > 0 and burst >= 1 are needed")
        limits[name.strip()] = bucket
    return limits


class LocalBuckets:
    """This process's buckets (the embedded default: one gateway replica)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, bucket: Bucket) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        tokens, at = self._state.get(key, (float(bucket.burst), now))
        tokens = min(float(bucket.burst), tokens + (now - at) * bucket.rate_per_s)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / bucket.rate_per_s


# Refill by elapsed time on Redis's own clock, then take up to ARGV[3] whole tokens (as many
# as there are); one script, so no two clients ever take the same token. Returns the tokens
# taken and, when none, the seconds until one is there.
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = math.min(wanted, math.floor(tokens))
local wait = 0
if taken >= 1 then tokens = tokens - taken else taken = 0; wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""

# A replica takes up to this many tokens per Redis call and spends them locally within
# LEASE_S: most requests then pay no Redis round trip. Leased tokens are spent from the shared
# bucket, so the cluster never grants more than the bucket holds; a replica may leave up to
# lease - 1 of them unused (they lapse after LEASE_S).
MAX_LEASE = 32
LEASE_S = 1.0


def lease_size(bucket: Bucket) -> int:
    return max(1, min(MAX_LEASE, bucket.burst // 8, int(bucket.rate_per_s * LEASE_S)))


class RedisBuckets:
    """Buckets shared by every process that uses the same Redis, leased in small batches."""

    def __init__(self, url: str, prefix: str = "prsm:rl:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(TAKE)
        self._prefix = prefix
        self._leases: dict[str, tuple[int, float]] = {}  # key → (tokens left, valid until)
        self._locks: dict[str, asyncio.Lock] = {}

    def _from_lease(self, key: str, now: float) -> bool:
        left, until = self._leases.get(key, (0, 0.0))
        if left > 0 and now < until:
            self._leases[key] = (left - 1, until)
            return True
        return False

    async def take(self, key: str, bucket: Bucket) -> float:
        if self._from_lease(key, time.monotonic()):
            return 0.0
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one refill per key at a time; the others use what it brought
            if self._from_lease(key, time.monotonic()):
                return 0.0
            wanted = lease_size(bucket)
            taken, wait = await self._script(
                keys=[self._prefix + key], args=[bucket.rate_per_s, bucket.burst, wanted]
            )
            if int(taken) == 0:
                return float(wait)
            if len(self._leases) > 10_000:  # forget lapsed leases of principals gone quiet
                now = time.monotonic()
                self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
                self._locks = {k: v for k, v in self._locks.items() if k in self._leases}
            self._leases[key] = (int(taken) - 1, time.monotonic() + LEASE_S)
            return 0.0

    async def close(self) -> None:
        await self._redis.aclose()


class RateLimiter:
    def __init__(
        self, limits: dict[str, Bucket], buckets: LocalBuckets | RedisBuckets, fail_open: bool
    ) -> None:
        self._limits = limits
        self._buckets = buckets
        self._fail_open = fail_open

    async def check(self, principal: Principal, route_class: str) -> None:
        """Take a token for this principal and class, or raise ``RateLimited``."""
        bucket = self._limits.get(route_class)
        if bucket is None:
            return
        key = f"{principal.tenant_id}/{principal.user_id}/{route_class}"
        try:
            wait = await self._buckets.take(key, bucket)
        except (OSError, RedisError) as exc:  # unreachable, timed out, refused
            self._unavailable(exc)
            return
        if wait > 0:
            raise RateLimited(
                f"rate limit of {bucket.rate_per_s:g}/s (burst {bucket.burst}) for "
                f"{route_class} reached; retry in {math.ceil(wait)} s",
                retry_after_s=wait,
            )

    def _unavailable(self, exc: Exception) -> None:
        metrics.RATE_LIMITER_ERRORS.labels("open" if self._fail_open else "closed").inc()
        log.error("rate limiter unavailable (%s): failing %s", type(exc).__name__,
                  "open" if self._fail_open else "closed")  # fmt: skip
        if not self._fail_open:
            raise RateLimiterUnavailable("the rate limiter is unavailable; retry shortly") from exc
