"""Allocations as Ray placement groups: create one for a task's bundles (named after the
task, detached so that it outlives a scheduler restart), each bundle pinned to the node the
domain's placement chose for it (a label selector on the node id, ``ray.io/node-id``), wait
until it is ready, see where its bundles went, remove it. Every Ray call of the scheduler's
placement is here."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

from prsm.domain.placement import Bundle, Placement

NODE_ID_LABEL = "ray.io/node-id"  # every Ray node carries it


def pg_name(task_id: str) -> str:
    return f"prsm-task-{task_id}"


def ray_bundles(bundles: list[Bundle]) -> list[dict[str, float]]:
    out = []
    for b in bundles:
        shape = {"CPU": b.cpu}
        if b.gpu:
            shape["GPU"] = b.gpu
        if b.memory_gb:
            shape["memory"] = b.memory_gb * 2**30
        out.append({k: v for k, v in shape.items() if v > 0} or {"CPU": 0.001})
    return out


def create(task_id: str, bundles: list[Bundle], placement: Placement) -> PlacementGroup:
    """A placement group for ``bundles`` with the decision's Ray strategy, each bundle on the
    node the decision chose for it."""
    selectors = [{NODE_ID_LABEL: node} for node in placement.nodes]
    pg: PlacementGroup = placement_group(
        ray_bundles(bundles),
        strategy=placement.ray_strategy,
        name=pg_name(task_id),
        lifetime="detached",
        bundle_label_selector=selectors,
    )
    return pg


async def ready(pg: PlacementGroup, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(pg.ready(), timeout_s)
    except TimeoutError:
        return False
    return True


def nodes_of(pg: PlacementGroup) -> list[str]:
    """The node of each bundle, in bundle order (empty strings while unplaced)."""
    table: dict[str, Any] = placement_group_table(pg)
    where = table.get("bundles_to_node_id", {})
    return [str(where.get(i, "")) for i in range(len(table.get("bundles", {})))]


def placed(pg: PlacementGroup) -> bool:
    """Every bundle is placed (not pending, nor being placed again after a node left)."""
    table: dict[str, Any] = placement_group_table(pg)
    return table.get("state") == "CREATED"


def remove(task_id: str) -> bool:
    """Remove the task's placement group if it exists; ``True`` if one was removed."""
    with contextlib.suppress(ValueError):
        remove_placement_group(get_placement_group(pg_name(task_id)))
        return True
    return False


def existing(task_id: str) -> PlacementGroup | None:
    try:
        pg: PlacementGroup = get_placement_group(pg_name(task_id))
    except ValueError:
        return None
    return pg
