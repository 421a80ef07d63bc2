"""Node selection by strategy: consolidation, distribution, latency; infeasible requests."""

from __future__ import annotations

import random

import pytest

from prsm.domain.errors import InsufficientResources
from prsm.domain.placement import Bundle, Node, NodeIndex, PlacementStrategy

CONS, DIST, LAT = (PlacementStrategy.CONSOLIDATION, PlacementStrategy.DISTRIBUTION,
                   PlacementStrategy.LATENCY)  # fmt: skip


def index(*nodes: Node) -> NodeIndex:
    idx = NodeIndex()
    idx.upsert_many(nodes)
    return idx


def cluster() -> NodeIndex:
    return index(
        Node("a", cpu=8, memory_gb=32, zone="us-1a", region="us"),
        Node("b", cpu=4, memory_gb=16, zone="us-1a", region="us"),
        Node("c", cpu=6, memory_gb=16, zone="us-1b", region="us"),
        Node("d", cpu=16, memory_gb=64, zone="eu-1a", region="eu"),
    )


def test_consolidation_uses_one_node_when_it_fits_the_largest_free_first() -> None:
    p = cluster().place([Bundle(cpu=4)] * 3, CONS)
    assert p.nodes == ("d", "d", "d") and p.ray_strategy == "STRICT_PACK"


def test_consolidation_spills_to_the_next_largest_node_with_pack() -> None:
    p = cluster().place([Bundle(cpu=8)] * 3, CONS)
    assert sorted(p.nodes) == ["a", "d", "d"] and p.ray_strategy == "PACK"


def test_distribution_balances_bundles_over_nodes() -> None:
    idx = index(*(Node(n, cpu=4) for n in "wxyz"))
    p = idx.place([Bundle(cpu=1)] * 4, DIST)
    assert sorted(p.nodes) == ["w", "x", "y", "z"] and p.ray_strategy == "SPREAD"
    p = idx.place([Bundle(cpu=1)] * 8, DIST)
    assert (
        sorted(set(p.nodes)) == ["w", "x", "y", "z"] and max(p.nodes.count(n) for n in "wxyz") == 2
    )


def test_strict_spread_needs_a_node_per_bundle() -> None:
    idx = index(Node("x", cpu=8), Node("y", cpu=8))
    assert idx.place([Bundle(1)] * 2, DIST, strict=True).ray_strategy == "STRICT_SPREAD"
    with pytest.raises(InsufficientResources, match="STRICT_SPREAD needs 3 nodes; 2 are up"):
        idx.place([Bundle(1)] * 3, DIST, strict=True)


def test_latency_keeps_every_bundle_in_one_zone_the_callers_first() -> None:
    idx = cluster()
    p = idx.place([Bundle(cpu=3)] * 3, LAT, caller_zone="us-1a", caller_region="us")
    assert p.zone == "us-1a" and set(p.nodes) <= {"a", "b"}
    p = idx.place([Bundle(cpu=5)] * 2, LAT, caller_zone="us-1a", caller_region="us")
    assert p.zone == "eu-1a"  # no us zone holds 2 × 5 CPU
    with pytest.raises(InsufficientResources, match="no single zone"):
        idx.place([Bundle(cpu=9)] * 2, LAT)
    with pytest.raises(InsufficientResources, match="zone 'us-1b' cannot hold"):
        idx.place([Bundle(cpu=5)] * 2, LAT, zone="us-1b")  # asked for: no other zone will do


def test_an_infeasible_request_says_what_is_missing() -> None:
    with pytest.raises(InsufficientResources) as raised:
        cluster().place([Bundle(cpu=32, memory_gb=8)], CONS)
    message = str(raised.value)
    assert "no node has a bundle's 1 bundle(s) of 32 CPU, 8 GiB free" in message
    assert "the largest free: 16 CPU" in message and "wait for a node" in message
    with pytest.raises(InsufficientResources, match="no node is available"):
        NodeIndex().place([Bundle(1)], DIST)


def test_reserving_and_releasing_changes_what_fits() -> None:
    idx = index(Node("x", cpu=4), Node("y", cpu=2))
    p = idx.place([Bundle(cpu=4)], CONS)
    idx.take(p.nodes[0], Bundle(cpu=4))
    with pytest.raises(InsufficientResources):
        idx.place([Bundle(cpu=4)], CONS)
    idx.take(p.nodes[0], Bundle(cpu=4), sign=-1)
    assert idx.place([Bundle(cpu=4)], CONS).nodes == ("x",)


def test_memory_and_gpu_count_as_well_as_cpu() -> None:
    idx = index(Node("cpu", cpu=64, memory_gb=8), Node("gpu", cpu=8, gpu=2, memory_gb=64))
    assert idx.place([Bundle(cpu=4, gpu=1)], CONS).nodes == ("gpu",)
    assert idx.place([Bundle(cpu=4, memory_gb=32)], CONS).nodes == ("gpu",)


def test_random_placements_never_overcommit_a_node() -> None:
    rng = random.Random(3)
    for _ in range(30):
        zones = ["z1", "z2", "z3"]
        nodes = [Node(f"n{i}", cpu=rng.choice([2, 4, 8]), memory_gb=rng.choice([8, 16]),
                      zone=rng.choice(zones)) for i in range(rng.randint(1, 12))]  # fmt: skip
        idx = index(*[Node(n.node_id, n.cpu, n.gpu, n.memory_gb, n.zone) for n in nodes])
        bundles = [Bundle(cpu=rng.choice([1, 2, 3]), memory_gb=rng.choice([0, 2]))
                   for _ in range(rng.randint(1, 6))]  # fmt: skip
        for strategy in PlacementStrategy:
            try:
                p = idx.place(bundles, strategy)
            except InsufficientResources:
                continue
            load: dict[str, float] = {}
            for node, b in zip(p.nodes, bundles, strict=True):
                load[node] = load.get(node, 0) + b.cpu
            free = {n.node_id: n.cpu for n in nodes}
            assert all(load[n] <= free[n] for n in load), (strategy, p, nodes, bundles)
            if strategy is LAT:
                assert len({idx.nodes[n].zone for n in p.nodes}) == 1
