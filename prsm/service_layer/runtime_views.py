"""What the runtime actors answer the gateway: plain, frozen data that Ray pickles, that
``prsm.runtime`` builds and ``prsm.serve`` turns into the wire models of ``prsm.api``.

- ``AgentView``: one of the orchestrator's agents (``Orchestrator.agents``);
- ``QueuePosition``: where a queued task stands (``Scheduler.stand``);
- ``ClusterView`` of ``NodeView``\\ s, each with its compute-node actor's ``NodeReport``
  (``Scheduler.cluster``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentView:
    """An agent: its type, status, load, observed speed and heartbeat age."""

    id: str
    type: str
    status: str  # AgentStatus.value
    load: float  # share of its capacity in use, 0..1
    capabilities: tuple[str, ...]
    running: int  # batches of subtasks running now
    done: int  # subtasks run since it started
    speed: dict[str, float]  # skill → observed speed (1.0: nominal)
    node_id: str
    last_heartbeat_s: float | None  # seconds since its last heartbeat (None: none yet)


@dataclass(frozen=True)
class QueuePosition:
    """Where a queued task stands: its position (1: next), the estimated seconds until it
    starts, and why it waits (``None`` for a task the scheduler has not seen yet)."""

    position: int
    estimated_start_s: float
    reason: str | None


@dataclass(frozen=True)
class GpuReport:
    index: int
    util_percent: float
    memory_used_gb: float
    memory_total_gb: float


@dataclass(frozen=True)
class NodeReport:
    """What a compute-node actor measures on its machine (psutil; GPUs through NVML)."""

    node_id: str
    cpu_percent: float
    cpu_count: int | None
    memory_used_gb: float
    memory_total_gb: float
    load_1m: float
    gpus: tuple[GpuReport, ...]
    at: float  # time.time() of the measurement


@dataclass(frozen=True)
class NodeView:
    """A Ray node: capacity, what is free, utilisation per resource (CPU, GPU, memory in
    bytes), the allocations with a bundle on it, and its latest report (``None``: none
    yet)."""

    node_id: str
    address: str
    zone: str
    region: str
    total: dict[str, float]
    free: dict[str, float]
    utilisation: dict[str, float]
    allocations: int
    report: NodeReport | None


@dataclass(frozen=True)
class ClusterView:
    """The nodes and the totals, the queue's length and the placement groups held."""

    nodes: tuple[NodeView, ...]
    total: dict[str, float]
    free: dict[str, float]
    queued: int
    allocations: int
