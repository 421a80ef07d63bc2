"""Where a task's resources go (resource allocation): given the nodes' free
resources and a request of bundles, choose a node for each bundle by strategy.

- **consolidation**: fewest nodes, largest free first (Ray: STRICT_PACK when every bundle fits
  one node, else PACK);
- **distribution**: balance across nodes, each bundle on the node with the most free at that
  point (SPREAD; STRICT_SPREAD, one node per bundle, on request);
- **latency**: every bundle inside one zone — the caller's zone if it fits, else one in the
  caller's region, else the zone with the most free CPU (bundles confined by node labels).

Nodes are kept ordered by free CPU (``SortedList``), per zone too, so one decision costs
O(bundles × log nodes) rather than a pass over every node: a cluster of 10,000 nodes decides
about as fast as one of 10. Infeasible requests raise ``InsufficientResources`` saying what
is missing and what would fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

from prsm.domain.errors import InsufficientResources, InvalidRequest

MAX_BUNDLES = 64
SCAN = 64  # nodes looked at past the largest before a bundle is declared not to fit


class PlacementStrategy(StrEnum):
    CONSOLIDATION = "consolidation"
    DISTRIBUTION = "distribution"
    LATENCY = "latency"


@dataclass(frozen=True)
class PlacementRequest:
    """How a task asks for its resources to be placed: a strategy (``None``: the scheduler
    chooses from the task's profile), ``strict`` (distribution: one node per bundle), a
    ``zone`` to stay in (latency; empty: the best zone), and how many bundles to split the
    request into."""

    strategy: PlacementStrategy | None = None
    strict: bool = False
    zone: str = ""
    bundles: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.bundles <= MAX_BUNDLES:
            raise InvalidRequest(f"bundles must be within 1..{MAX_BUNDLES}, got {self.bundles}")
        if self.strict and self.strategy is not PlacementStrategy.DISTRIBUTION:
            raise InvalidRequest("strict applies to the distribution strategy only")
        if self.zone and self.strategy is not PlacementStrategy.LATENCY:
            raise InvalidRequest("zone applies to the latency strategy only")

    def as_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy.value if self.strategy else None,
                "strict": self.strict, "zone": self.zone, "bundles": self.bundles}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PlacementRequest:
        strategy = raw.get("strategy")
        return cls(PlacementStrategy(strategy) if strategy else None, bool(raw.get("strict")),
                   str(raw.get("zone") or ""), int(raw.get("bundles") or 1))  # fmt: skip


@dataclass(frozen=True)
class Bundle:
    cpu: float  # (a task's own request says how much: ResourceRequest has the default)
    gpu: float = 0.0
    memory_gb: float = 0.0


@dataclass
class Node:
    node_id: str
    cpu: float  # free
    gpu: float = 0.0
    memory_gb: float = 0.0
    zone: str = ""
    region: str = ""
    alive: bool = True

    def fits(self, b: Bundle) -> bool:
        eps = 1e-9
        return (self.cpu + eps >= b.cpu and self.gpu + eps >= b.gpu
                and self.memory_gb + eps >= b.memory_gb)  # fmt: skip


@dataclass(frozen=True)
class Placement:
    strategy: PlacementStrategy
    ray_strategy: str  # STRICT_PACK | PACK | SPREAD | STRICT_SPREAD
    nodes: tuple[str, ...]  # the node chosen for each bundle, in bundle order
    zone: str = ""  # latency: the zone the bundles are confined to


@dataclass
class NodeIndex:
    """Free resources per node, ordered by free CPU (largest first), per zone too."""

    nodes: dict[str, Node] = field(default_factory=dict)
    _order: SortedList = field(default_factory=lambda: SortedList(key=_key))
    _zones: dict[str, SortedList] = field(default_factory=dict)

    def upsert(self, node: Node) -> None:
        self.remove(node.node_id)
        self.nodes[node.node_id] = node
        self._order.add(node)
        self._zones.setdefault(node.zone, SortedList(key=_key)).add(node)

    def upsert_many(self, nodes: Iterable[Node]) -> None:
        for n in nodes:
            self.upsert(n)

    def remove(self, node_id: str) -> None:
        old = self.nodes.pop(node_id, None)
        if old is not None:
            self._order.remove(old)
            self._zones[old.zone].remove(old)

    def take(self, node_id: str, b: Bundle, sign: float = 1.0) -> None:
        """Reserve (or, with ``sign=-1``, give back) a bundle's resources on a node."""
        node = self.nodes[node_id]
        self.remove(node_id)
        node.cpu -= sign * b.cpu
        node.gpu -= sign * b.gpu
        node.memory_gb -= sign * b.memory_gb
        self.upsert(node)

    # --- decisions -------------------------------------------------------------------------

    def place(
        self,
        bundles: list[Bundle],
        strategy: PlacementStrategy,
        strict: bool = False,
        caller_zone: str = "",
        caller_region: str = "",
        zone: str = "",
    ) -> Placement:
        """Choose a node per bundle (nothing is reserved: ``take`` does that). Latency: in
        ``zone`` if given, else the caller's zone, its region, or the zone with most CPU."""
        if not bundles:
            raise InsufficientResources("a placement needs at least one bundle")
        if strategy is PlacementStrategy.LATENCY:
            zone = self._zone_for(bundles, zone or caller_zone, caller_region, bool(zone))
            chosen = _pack(self._zones[zone], bundles)
            assert chosen is not None
            return Placement(strategy, "PACK" if len(set(chosen)) > 1 else "STRICT_PACK",
                             tuple(chosen), zone)  # fmt: skip
        if strategy is PlacementStrategy.CONSOLIDATION:
            chosen = _pack(self._order, bundles)
            if chosen is None:
                raise InsufficientResources(self._why(bundles))
            ray = "STRICT_PACK" if len(set(chosen)) == 1 else "PACK"
            return Placement(strategy, ray, tuple(chosen))
        chosen = _spread(self._order, bundles, strict)
        if chosen is None:
            raise InsufficientResources(self._why(bundles, strict))
        return Placement(strategy, "STRICT_SPREAD" if strict else "SPREAD", tuple(chosen))

    def _zone_for(self, bundles: list[Bundle], zone: str, region: str,
                  required: bool = False) -> str:  # fmt: skip
        def fits(z: str) -> bool:
            return z in self._zones and _pack(self._zones[z], bundles) is not None

        if zone and fits(zone):
            return zone
        if required:
            raise InsufficientResources(
                f"zone {zone!r} cannot hold {_describe(bundles)} now (free CPU there: "
                f"{self._zone_cpu(zone):g}); wait, ask for less, or leave the zone open"
            )
        same_region = {n.zone for n in self.nodes.values() if region and n.region == region}
        for z in sorted(same_region, key=lambda z: -self._zone_cpu(z)):
            if fits(z):
                return z
        for z in sorted(self._zones, key=lambda z: -self._zone_cpu(z)):
            if fits(z):
                return z
        raise InsufficientResources(
            f"no single zone can hold {_describe(bundles)}; the zone with the most free CPU "
            f"has {max((self._zone_cpu(z) for z in self._zones), default=0):g}: ask for fewer "
            "or smaller bundles, or use consolidation or distribution across zones"
        )

    def _zone_cpu(self, zone: str) -> float:
        return float(sum(n.cpu for n in self._zones.get(zone, ())))

    def _why(self, bundles: list[Bundle], strict: bool = False) -> str:
        alive = list(self._order)
        if not alive:
            return f"no node is available for {_describe(bundles)}"
        biggest = max(bundles, key=lambda b: (b.cpu, b.gpu, b.memory_gb))
        best = alive[0]
        parts = [f"cannot place {_describe(bundles)}"]
        if not any(n.fits(biggest) for n in islice(alive, SCAN)):
            largest = f"{best.cpu:g} CPU, {best.gpu:g} GPU, {best.memory_gb:g} GiB"
            parts.append(f"no node has a bundle's {_describe([biggest])} free (the largest "
                         f"free: {largest})")  # fmt: skip
        if strict and len(alive) < len(bundles):
            parts.append(f"STRICT_SPREAD needs {len(bundles)} nodes; {len(alive)} are up")
        total = sum(n.cpu for n in alive)
        parts.append(f"free CPU in the cluster: {total:g} on {len(alive)} node(s); ask for "
                     "less, or wait for a node that fits to join")  # fmt: skip
        return "; ".join(parts)


def _key(n: Node) -> tuple[float, float, str]:
    return (-n.cpu, -n.memory_gb, n.node_id)


ZERO = Bundle(0.0, 0.0, 0.0)


def _fits(n: Node, b: Bundle, used: dict[str, Bundle]) -> bool:
    """Does ``b`` fit on ``n`` besides what this decision already put there?"""
    t = used.get(n.node_id, ZERO)
    return Node(n.node_id, n.cpu - t.cpu, n.gpu - t.gpu, n.memory_gb - t.memory_gb).fits(b)


def _add(used: dict[str, Bundle], node: str, b: Bundle) -> None:
    u = used.get(node, ZERO)
    used[node] = Bundle(u.cpu + b.cpu, u.gpu + b.gpu, u.memory_gb + b.memory_gb)


def _pack(order: SortedList, bundles: list[Bundle]) -> list[str] | None:
    """Largest free node first; stay on a node while bundles fit there."""
    used: dict[str, Bundle] = {}
    chosen: list[Node] = []
    for b in sorted(bundles, key=lambda b: -b.cpu):
        if chosen and _fits(chosen[-1], b, used):
            node = chosen[-1]
        else:
            first = (n for n in islice(order, SCAN + len(chosen)) if _fits(n, b, used))
            found = next(first, None)
            if found is None:
                return None
            node = found
        _add(used, node.node_id, b)
        chosen.append(node)
    return _in_bundle_order(bundles, [n.node_id for n in chosen])


def _spread(order: SortedList, bundles: list[Bundle], strict: bool) -> list[str] | None:
    """Each bundle on the node with the most CPU left (a node per bundle when strict)."""
    used: dict[str, Bundle] = {}
    chosen: list[str] = []
    # Each bundle lowers one node, so the most-free node is among the first few; look further
    # only when none of those fits (memory or GPU).
    near = list(islice(order, 2 * len(bundles) + 2))
    for b in sorted(bundles, key=lambda b: -b.cpu):
        fitting = [n for n in near if _fits(n, b, used) and not (strict and n.node_id in used)]
        if not fitting:
            far = islice(order, SCAN + len(bundles))
            fitting = [n for n in far if _fits(n, b, used) and not (strict and n.node_id in used)]
        if not fitting:
            return None
        node = max(fitting, key=lambda n: n.cpu - used.get(n.node_id, ZERO).cpu)
        _add(used, node.node_id, b)
        chosen.append(node.node_id)
    return _in_bundle_order(bundles, chosen)


def _in_bundle_order(bundles: list[Bundle], chosen: list[str]) -> list[str]:
    """``chosen`` follows the bundles sorted by CPU; give it back in the caller's order."""
    order = sorted(range(len(bundles)), key=lambda i: -bundles[i].cpu)
    out = [""] * len(bundles)
    for rank, i in enumerate(order):
        out[i] = chosen[rank]
    return out


def _describe(bundles: list[Bundle]) -> str:
    b = bundles[0]
    shape = f"{b.cpu:g} CPU" + (f", {b.gpu:g} GPU" if b.gpu else "") + (
        f", {b.memory_gb:g} GiB" if b.memory_gb else "")  # fmt: skip
    same = all(x == b for x in bundles)
    return f"{len(bundles)} bundle(s) of {shape}" if same else f"{len(bundles)} bundles"
