"""Scheduling policy: the strategy for a task from its profile and the cluster's
load, the queue order (priority with aging, so nothing starves), queue positions, and start
estimates from observed durations.

Strategy choice, in this order:
1. the task asks for more memory than the cluster has free → MEMORY_EFFICIENT (one bundle,
   consolidated, waits for memory rather than spreading a memory-hungry plan);
2. it waits on I/O (model calls) → IO_OPTIMIZED (no CPU reserved beyond a token share);
3. it asks for ≥ 8 GiB → MEMORY_OPTIMIZED (consolidated on the node with most memory);
4. it can run in parallel (several items, ≥ 1 CPU) → PARALLEL_CPU, spread over nodes — or
   SEQUENTIAL_CPU, consolidated, when the cluster's CPU use is above 80 %;
5. otherwise BALANCED (packed).

Two lanes (``reservation_reason``): a task whose request a pooled agent's slot covers — at
most ``POOLED_SLOT_CPU`` CPU, no GPU, no memory, one bundle, no placement asked for, and no
code of its own to ship (a ``runtime_env``, or a skill not installed on the platform) — runs
on the orchestrator's pooled agents, which already hold their CPUs: no placement group is
made for it, and it counts against its tenant's quota like any other. Every other task gets
a reservation (a placement group) and its code runs on agents placed in its bundles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from prsm.domain.placement import PlacementRequest, PlacementStrategy

CPU_BUSY = 0.80
MEMORY_HEAVY_GB = 8.0
AGING_PER_MINUTE = 1.0  # priority points a queued task gains per minute waited
DURATION_ALPHA = 0.3
DEFAULT_DURATION_S = 10.0
POOLED_SLOT_CPU = 1.0  # the largest pooled agent's CPU share (a simulation agent's)


class SchedulingStrategy(StrEnum):
    PARALLEL_CPU = "PARALLEL_CPU"
    SEQUENTIAL_CPU = "SEQUENTIAL_CPU"
    MEMORY_OPTIMIZED = "MEMORY_OPTIMIZED"
    IO_OPTIMIZED = "IO_OPTIMIZED"
    BALANCED = "BALANCED"
    MEMORY_EFFICIENT = "MEMORY_EFFICIENT"


PLACEMENT: dict[SchedulingStrategy, PlacementStrategy] = {
    SchedulingStrategy.PARALLEL_CPU: PlacementStrategy.DISTRIBUTION,
    SchedulingStrategy.SEQUENTIAL_CPU: PlacementStrategy.CONSOLIDATION,
    SchedulingStrategy.MEMORY_OPTIMIZED: PlacementStrategy.CONSOLIDATION,
    SchedulingStrategy.IO_OPTIMIZED: PlacementStrategy.DISTRIBUTION,
    SchedulingStrategy.BALANCED: PlacementStrategy.CONSOLIDATION,
    SchedulingStrategy.MEMORY_EFFICIENT: PlacementStrategy.CONSOLIDATION,
}


@dataclass(frozen=True)
class TaskProfile:
    cpu: float
    memory_gb: float = 0.0
    gpu: float = 0.0
    parallel: bool = False  # splits into subtasks that can run at once
    io_bound: bool = False  # mostly waits (model calls)


@dataclass(frozen=True)
class ClusterLoad:
    cpu_used: float  # 0..1 of the cluster's CPUs in use
    memory_free_gb: float


def choose_strategy(task: TaskProfile, load: ClusterLoad) -> SchedulingStrategy:
    if task.memory_gb > load.memory_free_gb:
        return SchedulingStrategy.MEMORY_EFFICIENT
    if task.io_bound:
        return SchedulingStrategy.IO_OPTIMIZED
    if task.memory_gb >= MEMORY_HEAVY_GB:
        return SchedulingStrategy.MEMORY_OPTIMIZED
    if task.parallel and task.cpu >= 1:
        if load.cpu_used > CPU_BUSY:
            return SchedulingStrategy.SEQUENTIAL_CPU
        return SchedulingStrategy.PARALLEL_CPU
    return SchedulingStrategy.BALANCED


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    task_id: str
    task_type: str
    priority: int
    submitted_at: datetime


def effective_priority(q: Queued, now: datetime) -> float:
    """Priority plus ``AGING_PER_MINUTE`` per minute waited: a low-priority task overtakes
    newer high-priority ones in time, so nothing starves."""
    waited_min = max(0.0, (now - q.submitted_at).total_seconds() / 60.0)
    return q.priority + AGING_PER_MINUTE * waited_min


def order(queue: Iterable[Queued], now: datetime) -> list[Queued]:
    """Who goes first: highest effective priority, then the oldest."""
    return sorted(queue, key=lambda q: (-effective_priority(q, now), q.submitted_at, q.task_id))


class Durations:
    """Observed run times per task type (moving average), for start estimates."""

    def __init__(self) -> None:
        self.mean_s: dict[str, float] = {}

    def observe(self, task_type: str, seconds: float) -> None:
        old = self.mean_s.get(task_type)
        self.mean_s[task_type] = seconds if old is None else old + DURATION_ALPHA * (seconds - old)

    def of(self, task_type: str) -> float:
        if task_type in self.mean_s:
            return self.mean_s[task_type]
        if self.mean_s:
            return sum(self.mean_s.values()) / len(self.mean_s)
        return DEFAULT_DURATION_S

    def copy(self) -> Durations:
        copied = Durations()
        copied.mean_s = dict(self.mean_s)
        return copied


Backlog = dict[int, tuple[int, float]]  # priority → (tasks queued, their work in seconds)


def backlog(queue: Iterable[Queued], durations: Durations) -> Backlog:
    """The queued tasks and their expected work, per priority."""
    out: Backlog = {}
    for q in queue:
        n, work = out.get(q.priority, (0, 0.0))
        out[q.priority] = (n + 1, work + durations.of(q.task_type))
    return out


def place_new(queued: Backlog, new: Iterable[tuple[int, str]], durations: Durations,
              slots: int) -> list[tuple[int, float]]:  # fmt: skip
    """Where newly submitted tasks ``(priority, type)``, in this order, would stand: behind
    every queued task of their priority or a higher one (ties: the older first), and each
    behind the ones before it. ``(position from 1, estimated seconds to start)`` each: the
    work ahead, shared by the ``slots`` tasks that run at once."""
    counts = dict(queued)
    out = []
    for priority, task_type in new:
        ahead = [v for p, v in counts.items() if p >= priority]
        n, work = sum(c for c, _ in ahead), sum(w for _, w in ahead)
        out.append((n + 1, work / max(1, slots) if n else 0.0))
        c, w = counts.get(priority, (0, 0.0))
        counts[priority] = (c + 1, w + durations.of(task_type))
    return out


def positions(queue: list[Queued], now: datetime, durations: Durations,
              slots: int) -> dict[str, tuple[int, float]]:  # fmt: skip
    """Each queued task's ``(position from 1, estimated seconds to start)``."""
    out: dict[str, tuple[int, float]] = {}
    work = 0.0
    for i, q in enumerate(order(queue, now)):
        out[q.task_id] = (i + 1, work / max(1, slots))
        work += durations.of(q.task_type)
    return out


def fits_quota(running: int, cpu: float, want_cpu: float, max_running: int,
               max_cpu: float) -> str:  # fmt: skip
    """``""`` if a tenant may start one more task, else why not."""
    if running >= max_running:
        return f"tenant quota: {running} of {max_running} tasks running"
    if cpu + want_cpu > max_cpu + 1e-9:
        return f"tenant quota: {cpu:g} + {want_cpu:g} CPU would exceed {max_cpu:g}"
    return ""


Shape = tuple[float, float, float]  # (cpu, memory_gb, gpu)


def bundles_for(cpu: float, memory_gb: float, gpu: float, strategy: SchedulingStrategy,
                count: int = 1, max_bundle_cpu: float = 1.0) -> list[Shape]:  # fmt: skip
    """The request split into bundles of ``(cpu, memory_gb, gpu)``: ``count`` equal ones when
    the task asks for several; else parallel plans in ``max_bundle_cpu`` pieces (to be
    spread), a token CPU share for I/O-bound ones, everything else one bundle."""
    if count > 1:
        return [(cpu / count, memory_gb / count, gpu / count)] * count
    if strategy is SchedulingStrategy.PARALLEL_CPU and cpu > max_bundle_cpu:
        n = math.ceil(cpu / max_bundle_cpu)
        return [(cpu / n, memory_gb / n, gpu / n)] * n
    if strategy is SchedulingStrategy.IO_OPTIMIZED:
        return [(min(cpu, 0.1), memory_gb, gpu)]
    return [(cpu, memory_gb, gpu)]


def reservation_reason(cpu: float, gpu: float, memory_mb: int, where: PlacementRequest,
                       ships_code: bool = False) -> str:  # fmt: skip
    """Why a task needs a reservation of its own (``""``: it runs on pooled agents)."""
    if ships_code:
        return "it ships its own code (agents of its own run it, in its runtime_env)"
    if gpu > 0:
        return f"it asks for {gpu:g} GPU"
    if memory_mb > 0:
        return f"it asks for {memory_mb} MiB of memory"
    if where.bundles > 1:
        return f"it asks for {where.bundles} bundles"
    if where.strategy is not None or where.strict or where.zone:
        return "it asks for a placement"
    if cpu > POOLED_SLOT_CPU:
        return f"it asks for {cpu:g} CPU, more than a pooled agent's {POOLED_SLOT_CPU:g}"
    return ""
