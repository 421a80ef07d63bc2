"""The scheduler on a real multi-node Ray (several raylets on this machine, labelled with
zones): placement by strategy, a request that waits for a node that fits, a node removed
mid-run, quotas, releases, the compute-node actors — and the scheduler killed and back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.placement_group import get_placement_group

from prsm import bootstrap
from prsm.adapters.skill_code import installed
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.identity import Principal
from prsm.domain.placement import PlacementRequest, PlacementStrategy
from prsm.domain.tasks import ResourceRequest, Task, TaskStatus
from prsm.runtime import orchestrator, scheduler
from prsm.runtime.allocations import pg_name
from prsm.service_layer import queries
from prsm.service_layer.handlers import load_task
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.runtime_views import ClusterView, QueuePosition

ALICE = Principal(user_id="alice", tenant_id="lab", roles=frozenset({"user"}))
BOB = Principal(user_id="bob", tenant_id="other", roles=frozenset({"user"}))
SLOW = {"skill": "math.primes_below", "items": [4_000_000] * 60}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Settings]]:
    data_dir: Path = tmp_path_factory.mktemp("multinode")
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "labels": {"zone": "z1", "region": "r1"}})  # fmt: skip
    nodes.add_node(num_cpus=2, labels={"zone": "z1", "region": "r1"})
    nodes.add_node(num_cpus=2, labels={"zone": "z2", "region": "r1"})
    ray.init(address=nodes.address, logging_level=logging.ERROR)
    settings = Settings(data_dir=data_dir, agents={"compute": 2}, default_model="",
                        task_retry_backoff_s=0.05, tenant_max_running=2)  # fmt: skip
    try:
        bootstrap.start_orchestrator(settings)
        wait_for(lambda: len(ray.get(orchestrator.handle().agents.remote())) == 2, 120, "agents")
        wait_for(lambda: len(view().nodes) == 3, 60, "the scheduler to see 3 nodes")
        yield nodes, settings
    finally:
        scheduler.stop()
        orchestrator.stop()
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture
async def bus(cluster: tuple[Cluster, Settings]) -> AsyncIterator[MessageBus]:
    store = await bootstrap.open_store(cluster[1])
    yield MessageBus(store, store, bootstrap.utc_now, source="tests", skills=installed())
    await store.close()


def view() -> ClusterView:
    handle = scheduler.handle()
    if handle is None:
        return ClusterView(nodes=(), total={}, free={}, queued=0, allocations=0)
    seen: ClusterView = ray.get(handle.cluster.remote())
    return seen


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def submit(bus: MessageBus, cpu: float, placement: PlacementRequest,
                 params: dict[str, Any] | None = None, who: Principal = ALICE) -> str:  # fmt: skip
    spec = cmds.TaskSpec(task_type="map", params=params or SLOW, placement=placement,
                         resources=ResourceRequest(cpu=cpu))  # fmt: skip
    [s] = await bus.handle(cmds.SubmitTasks(correlation_id="t", principal=who, specs=(spec,)))
    return str(s.task.task_id)


async def until(bus: MessageBus, task_id: str, done: Any, timeout_s: float = 120) -> Task:
    deadline = time.monotonic() + timeout_s
    while True:
        task = await load_task(bus._context.store, task_id)
        if done(task):
            return task
        assert time.monotonic() < deadline, f"task {task_id} is {task.status}"
        await asyncio.sleep(0.1)


def placement_of(task: Task, history: list[ev.Event]) -> dict[str, Any]:
    [scheduled] = [e for e in history if isinstance(e, ev.TaskScheduled)]
    return scheduled.placement


async def history(bus: MessageBus, task_id: str) -> list[ev.Event]:
    return [r.event for r in await bus._context.store.read_stream(streams.task(task_id))]


def zone_of(node_id: str) -> str:
    return next(n["Labels"].get("zone", "") for n in ray.nodes() if n["NodeID"] == node_id)


def started(t: Task) -> bool:
    return t.status in (TaskStatus.RUNNING, TaskStatus.SUCCEEDED)


def ended(t: Task) -> bool:
    return t.status.is_terminal


def where(hold_s: float, n: int) -> dict[str, Any]:
    """Parameters of a map whose subtasks report where their code runs."""
    return {"skill": "sys.where", "items": [hold_s] * n}


def ran_on(task: Task) -> list[dict[str, Any]]:
    assert task.status is TaskStatus.SUCCEEDED, task.error
    return list(task.result["outputs"])


async def test_distribution_uses_distinct_nodes_and_is_released_at_the_end(
    bus: MessageBus,
) -> None:
    spread = PlacementRequest(PlacementStrategy.DISTRIBUTION, strict=True, bundles=3)
    task_id = await submit(bus, 1.5, spread, where(0.3, 6))
    task = await until(bus, task_id, ended)
    events = await history(bus, task_id)
    placement = placement_of(task, events)
    assert placement["ray_strategy"] == "STRICT_SPREAD" and len(set(placement["nodes"])) == 3
    # The code itself ran there, one bundle (0.5 CPU each) on each of the 3 nodes.
    outputs = ran_on(task)
    assert {o["node_id"] for o in outputs} == set(placement["nodes"])
    assert all(o["resources"] == {"CPU": 0.5} for o in outputs)
    places = await queries.where_it_ran(bus._context.store, task_id)
    assert sorted(p.bundle for p in places) == [0, 1, 2]
    assert [placement["nodes"][p.bundle] for p in places] == [p.node_id for p in places]
    assert sum(p.completed for p in places) == 6
    wait_for(lambda: not _pg_exists(task_id), 10, "the placement group to go")
    events = await until_released(bus, task_id)
    assert [e.reason for e in events if isinstance(e, ev.AllocationReleased)] == ["succeeded"]


async def until_released(bus: MessageBus, task_id: str) -> list[ev.Event]:
    deadline = time.monotonic() + 10
    while not any(isinstance(e, ev.AllocationReleased) for e in await history(bus, task_id)):
        assert time.monotonic() < deadline, "no release recorded"
        await asyncio.sleep(0.1)
    return await history(bus, task_id)


def _pg_exists(task_id: str) -> bool:
    try:
        get_placement_group(pg_name(task_id))
    except ValueError:
        return False
    return True


async def test_consolidation_packs_one_node_and_latency_stays_in_one_zone(
    bus: MessageBus,
) -> None:
    packed = await submit(bus, 1.0, PlacementRequest(PlacementStrategy.CONSOLIDATION, bundles=2),
                          where(0.2, 4))  # fmt: skip
    task = await until(bus, packed, ended)
    placement = placement_of(task, await history(bus, packed))
    assert placement["ray_strategy"] == "STRICT_PACK" and len(set(placement["nodes"])) == 1
    assert {o["node_id"] for o in ran_on(task)} == set(placement["nodes"])

    near = await submit(bus, 1.0, PlacementRequest(PlacementStrategy.LATENCY, zone="z2",
                                                   bundles=2), where(0.2, 4))  # fmt: skip
    task = await until(bus, near, ended)
    placement = placement_of(task, await history(bus, near))
    assert placement["zone"] == "z2" and {zone_of(n) for n in placement["nodes"]} == {"z2"}
    assert {zone_of(o["node_id"]) for o in ran_on(task)} == {"z2"}


async def test_the_code_gets_the_cpus_and_gpus_its_task_asked_for(
    bus: MessageBus, cluster: tuple[Cluster, Settings]
) -> None:
    task = await until(bus, await submit(bus, 1.5, PlacementRequest(), where(0, 1)), ended)
    assert [o["resources"] for o in ran_on(task)] == [{"CPU": 1.5}]

    nodes, _ = cluster
    gpu_node = nodes.add_node(num_cpus=1, num_gpus=1, labels={"zone": "z5", "region": "r1"})
    try:
        spec = cmds.TaskSpec(task_type="map", params=where(0, 2),
                             resources=ResourceRequest(cpu=0.5, gpu=1))  # fmt: skip
        [s] = await bus.handle(cmds.SubmitTasks(correlation_id="g", principal=ALICE,
                                                specs=(spec,)))  # fmt: skip
        task = await until(bus, s.task.task_id, ended)
        for o in ran_on(task):
            assert o["node_id"] == gpu_node.node_id and o["resources"]["GPU"] == 1
            assert o["gpu_ids"] == ["0"] and o["cuda_visible_devices"] == "0"
    finally:
        nodes.remove_node(gpu_node)
    wait_for(lambda: len(view().nodes) == 3, 30, "the GPU node to go")


async def test_a_reservation_holds_exactly_its_cpus_while_the_task_runs(bus: MessageBus) -> None:
    def free_cpu() -> float:
        return float(ray.available_resources().get("CPU", 0.0))

    before = free_cpu()
    for ending in ("succeeds", "fails", "is cancelled"):
        # (the failing one: 8 sieves of some seconds in all, and one n the sieve refuses)
        failing = {"skill": "math.primes_below", "items": [50_000_000] * 8 + [2 * 10**8]}
        params = failing if ending == "fails" else where(2, 4)
        task_id = await submit(bus, 4.0, PlacementRequest(PlacementStrategy.DISTRIBUTION),
                               params)  # fmt: skip
        await until(bus, task_id, lambda t: t.status is not TaskStatus.QUEUED)
        wait_for(lambda: free_cpu() == before - 4, 10, f"4 CPUs reserved before it {ending}")
        if ending == "is cancelled":
            await until(bus, task_id, started)
            await bus.handle(cmds.CancelTask(correlation_id="c", principal=ALICE,
                                             task_id=task_id))  # fmt: skip
        task = await until(bus, task_id, ended)
        expected = {"succeeds": TaskStatus.SUCCEEDED, "fails": TaskStatus.FAILED,
                    "is cancelled": TaskStatus.CANCELLED}[ending]  # fmt: skip
        assert task.status is expected
        wait_for(lambda: free_cpu() == before, 30, f"the 4 CPUs back after it {ending}")


async def test_a_task_within_a_pooled_slot_reserves_nothing(bus: MessageBus) -> None:
    task_id = await submit(bus, 1.0, PlacementRequest(), where(0, 3))
    task = await until(bus, task_id, ended)
    assert placement_of(task, await history(bus, task_id))["lane"] == "pooled"
    assert not _pg_exists(task_id) and len(ran_on(task)) == 3
    places = await queries.where_it_ran(bus._context.store, task_id)
    assert {p.bundle for p in places} == {None} and sum(p.completed for p in places) == 3


async def test_an_infeasible_request_waits_with_its_reason_then_runs_when_a_node_fits(
    bus: MessageBus, cluster: tuple[Cluster, Settings]
) -> None:
    nodes, _ = cluster
    big = PlacementRequest(PlacementStrategy.CONSOLIDATION)
    task_id = await submit(bus, 4.0, big, {"skill": "math.square", "items": [5]})
    handle = scheduler.handle()
    assert handle is not None

    def reason() -> str:
        try:  # while the scheduler restarts its calls fail
            found = ray.get(scheduler.handle().stand.remote([(task_id, 0, "map")]), timeout=10)
        except (ray.exceptions.RayError, AttributeError):
            return ""
        return str(found[0].reason or "")

    wait_for(lambda: "no node has" in reason(), 30, "the reason")
    assert "wait for a node that fits to join" in reason()
    ray.kill(handle, no_restart=False)  # the queue comes back from the store
    wait_for(lambda: scheduler.handle() is not None and "no node has" in reason(), 60,
             "the restarted scheduler to rebuild its queue")  # fmt: skip
    assert (await load_task(bus._context.store, task_id)).status is TaskStatus.QUEUED
    node = nodes.add_node(num_cpus=4, labels={"zone": "z3", "region": "r1"})
    try:
        task = await until(bus, task_id, ended)
        assert task.status is TaskStatus.SUCCEEDED and task.result == {"outputs": [25]}
        assert placement_of(task, await history(bus, task_id))["nodes"] == [node.node_id]
    finally:
        nodes.remove_node(node)
    # The restarted scheduler read every earlier release again and made none of them twice.
    log = await bus._context.store.read_log(0, {ev.AllocationReleased.type_name()}, 100_000)
    released = [r.event.task_id for r in log.events]
    assert released and len(released) == len(set(released))


async def test_a_node_removed_mid_run_its_bundle_is_re_placed_and_the_task_finishes(
    bus: MessageBus, cluster: tuple[Cluster, Settings]
) -> None:
    nodes, _ = cluster
    pair = [nodes.add_node(num_cpus=2, labels={"zone": "z4", "region": "r1"}) for _ in range(2)]
    wait_for(lambda: len(view().nodes) == 5, 30, "the new nodes")
    there = PlacementRequest(PlacementStrategy.LATENCY, zone="z4")
    task_id = await submit(bus, 1.0, there, {"skill": "math.primes_below",
                                             "items": [5_000_000] * 400})  # fmt: skip
    task = await until(bus, task_id, started)
    assert task.status is TaskStatus.RUNNING
    [first] = placement_of(task, await history(bus, task_id))["nodes"]
    gone = next(n for n in pair if n.node_id == first)
    other = next(n for n in pair if n.node_id != first)
    deadline = time.monotonic() + 60
    while not any(p.completed for p in await queries.where_it_ran(bus._context.store, task_id)):
        assert time.monotonic() < deadline, "no subtask completed in the bundle"
        await asyncio.sleep(0.1)
    nodes.remove_node(gone)
    assert (await load_task(bus._context.store, task_id)).status is TaskStatus.RUNNING
    try:
        moved = await until_event(bus, task_id, ev.AllocationMoved)
        assert moved.nodes == (other.node_id,)  # re-placed in the same zone
        task = await until(bus, task_id, ended)
        assert task.status is TaskStatus.SUCCEEDED and len(task.result["outputs"]) == 400
        # Its agent started again in the re-placed bundle, and the rest ran there.
        places = await queries.where_it_ran(bus._context.store, task_id)
        assert {p.node_id for p in places if p.completed} == {first, other.node_id}
        assert {p.bundle for p in places} == {0} and sum(p.completed for p in places) == 400
    finally:
        nodes.remove_node(other)
    wait_for(lambda: len(view().nodes) == 3, 30, "the nodes to go")


async def until_event(bus: MessageBus, task_id: str, kind: type[ev.Event]) -> Any:
    deadline = time.monotonic() + 60
    while True:
        found = [e for e in await history(bus, task_id) if isinstance(e, kind)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {kind.__name__}"
        await asyncio.sleep(0.2)


async def test_tenant_quota_keeps_extra_tasks_queued_with_the_reason(bus: MessageBus) -> None:
    ids = [await submit(bus, 0.5, PlacementRequest(), who=BOB) for _ in range(3)]
    await until(bus, ids[1], started)

    def waiting() -> dict[str, QueuePosition]:
        stands = ray.get(scheduler.handle().stand.remote([(t, 0, "map") for t in ids]))
        return {t: q for t, q in zip(ids, stands, strict=True) if q.reason is not None}

    wait_for(lambda: "tenant quota: 2 of 2 tasks running" in str(waiting()), 30, "the quota")
    assert list(waiting()) == [ids[2]] and waiting()[ids[2]].position == 1
    for task_id in ids:
        assert (await until(bus, task_id, ended, timeout_s=180)).status is TaskStatus.SUCCEEDED


async def test_a_cancelled_running_task_releases_its_allocation(bus: MessageBus) -> None:
    task_id = await submit(bus, 1.0, PlacementRequest(PlacementStrategy.CONSOLIDATION))
    await until(bus, task_id, started)
    assert _pg_exists(task_id)
    await bus.handle(cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=task_id))
    events = await until_released(bus, task_id)
    assert [e.reason for e in events if isinstance(e, ev.AllocationReleased)] == ["cancelled"]
    assert not _pg_exists(task_id)


def test_compute_node_actors_report_every_node_and_follow_joins(
    cluster: tuple[Cluster, Settings],
) -> None:
    nodes, _ = cluster
    wait_for(lambda: all(n.report for n in view().nodes), 30, "node reports")
    seen = view()
    assert len(seen.nodes) == 3 and seen.total["CPU"] == 6
    for n in seen.nodes:
        assert n.report is not None
        assert 0 <= n.report.cpu_percent <= 100 and n.report.memory_total_gb > 0
        assert n.report.gpus == () and n.zone in ("z1", "z2")
    node = nodes.add_node(num_cpus=1, labels={"zone": "z9"})
    try:
        wait_for(lambda: any(n.zone == "z9" and n.report for n in view().nodes), 60,
                 "a report from the new node")  # fmt: skip
    finally:
        nodes.remove_node(node)
    wait_for(lambda: len(view().nodes) == 3, 30, "the node to leave")
    estimate: list[QueuePosition] = ray.get(scheduler.handle().stand.remote([("t", 0, "map")]))
    assert estimate[0].position >= 1 and estimate[0].estimated_start_s >= 0
