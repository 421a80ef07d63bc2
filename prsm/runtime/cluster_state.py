"""The cluster as Ray sees it: live nodes, their labels (zone, region), total and free
resources. Free resources come from Ray's per-node view (already net of every placement
group and actor), the figure admission is checked against."""

from __future__ import annotations

from dataclasses import dataclass, field

import ray

from prsm.adapters.ray_compat import available_resources_per_node
from prsm.domain.placement import Node

ZONE_KEYS = ("ray.io/availability-zone", "zone")
REGION_KEYS = ("ray.io/availability-region", "region")
GIB = 2**30


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    address: str
    zone: str
    region: str
    total: dict[str, float]
    free: dict[str, float]
    labels: dict[str, str] = field(default_factory=dict)

    def as_node(self) -> Node:
        return Node(self.node_id, cpu=self.free.get("CPU", 0.0), gpu=self.free.get("GPU", 0.0),
                    memory_gb=self.free.get("memory", 0.0) / GIB, zone=self.zone,
                    region=self.region)  # fmt: skip


def _label(labels: dict[str, object], keys: tuple[str, ...]) -> tuple[str, str]:
    for key in keys:
        if labels.get(key):
            return key, str(labels[key])
    return "", ""


def location_of(node_id: str) -> tuple[str, str]:
    """``(region, zone)`` of a node, from its labels (empty where it has none)."""
    for n in ray.nodes():  # type: ignore[no-untyped-call]
        if n["NodeID"] == node_id:
            labels: dict[str, object] = dict(n.get("Labels") or {})
            return _label(labels, REGION_KEYS)[1], _label(labels, ZONE_KEYS)[1]
    return "", ""


def here() -> tuple[str, str]:
    """``(region, zone)`` of the node this process runs on."""
    return location_of(ray.get_runtime_context().get_node_id())


def live_nodes() -> list[NodeFacts]:
    free = available_resources_per_node()
    out = []
    for n in ray.nodes():  # type: ignore[no-untyped-call]
        if not n.get("Alive"):
            continue
        labels: dict[str, object] = dict(n.get("Labels") or {})
        _, zone = _label(labels, ZONE_KEYS)
        _, region = _label(labels, REGION_KEYS)
        node_id = n["NodeID"]
        out.append(NodeFacts(
            node_id=node_id, address=n.get("NodeManagerAddress", ""), zone=zone, region=region,
            total=_core(n.get("Resources") or {}),
            free=_core(free.get(node_id, {})), labels={k: str(v) for k, v in labels.items()},
        ))  # fmt: skip
    return out


def _core(resources: dict[str, float]) -> dict[str, float]:
    return {k: float(resources.get(k, 0.0)) for k in ("CPU", "GPU", "memory")}
