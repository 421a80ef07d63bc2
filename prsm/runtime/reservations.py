"""The scheduler's reservations: a task's bundles made into a placement group on the nodes
PRSM's placement chose (``reserve``), and, when one of those nodes leaves, the choice made
again over the live nodes (``decide_again``) and the group made again there (``make_again``).
The node index is the scheduler's view of what each node has free; both keep it current."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prsm.domain.errors import InsufficientResources
from prsm.domain.placement import Bundle, NodeIndex, Placement, PlacementStrategy
from prsm.domain.tasks import Task
from prsm.runtime import allocations

log = logging.getLogger("prsm.scheduler")

READY_TIMEOUT_S = 5.0  # how long a placement group may take to be placed before its task waits


def bundles_of(placed: dict[str, Any]) -> list[Bundle]:
    """The bundles of a recorded placement (``TaskScheduled.placement``)."""
    return [Bundle(float(c), float(g), float(m)) for c, g, m in placed["bundles"]]


async def reserve(task: Task, bundles: list[Bundle], decided: Placement, scheduling: str,
                  index: NodeIndex) -> dict[str, Any] | str:  # fmt: skip
    """The task's placement group on the decided nodes: the placement to record, or why the
    task has to wait (Ray did not place it in time)."""
    pg = await asyncio.to_thread(allocations.create, task.task_id, bundles, decided)
    if not await allocations.ready(pg, READY_TIMEOUT_S):
        allocations.remove(task.task_id)
        return f"waiting for Ray to place {len(bundles)} bundle(s) ({decided.ray_strategy})"
    nodes = await asyncio.to_thread(allocations.nodes_of, pg)
    for node, b in zip(nodes, bundles, strict=True):
        if node in index.nodes:
            index.take(node, b)
    return {"lane": "reserved", "strategy": decided.strategy.value,
            "ray_strategy": decided.ray_strategy,
            "scheduling": scheduling, "zone": decided.zone, "nodes": nodes,
            "bundles": [[b.cpu, b.gpu, b.memory_gb] for b in bundles],
            "placement_group": allocations.pg_name(task.task_id)}  # fmt: skip


def decide_again(index: NodeIndex, task: Task, placed: dict[str, Any]) -> Placement | None:
    """A new choice of nodes for a placement that lost one (its bundles on live nodes count
    as free to it), taken from the index; ``None`` while nothing fits."""
    bundles = bundles_of(placed)
    mine = [(n, b) for n, b in zip(placed["nodes"], bundles, strict=True) if n in index.nodes]
    for node, b in mine:
        index.take(node, b, sign=-1.0)
    try:
        decided = index.place(bundles, PlacementStrategy(placed["strategy"]),
                              task.placement.strict, zone=task.placement.zone)  # fmt: skip
    except InsufficientResources as exc:
        log.info("task %s cannot be placed again yet: %s", task.task_id, exc)
        for node, b in mine:
            index.take(node, b)
        return None
    for node, b in zip(decided.nodes, bundles, strict=True):
        index.take(node, b)
    return decided


async def make_again(task_id: str, placed: dict[str, Any], decided: Placement) -> bool:
    """Remove the task's group and make it again on the decided nodes; whether it is placed
    (if not, it is still waiting, and is decided again next time)."""
    await asyncio.to_thread(allocations.remove, task_id)
    pg = await asyncio.to_thread(allocations.create, task_id, bundles_of(placed), decided)
    return await allocations.ready(pg, READY_TIMEOUT_S)
