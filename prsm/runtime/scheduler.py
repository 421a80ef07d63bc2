"""The scheduler: a named, detached Ray actor that Ray restarts when it dies. It decides when
and where each task runs; the orchestrator then decides who runs its subtasks and how.

Every pass it reads the event log (the queue is rebuilt from it after a restart), takes the
queued tasks in priority order with aging, and admits each one whose dependencies have
succeeded, whose tenant is within its quota and whose resources fit the cluster's free
resources: it reserves them as a placement group with the task's strategy and marks the task
SCHEDULED, with the placement. A task that cannot start stays QUEUED with its reason; one
whose dependency failed or was cancelled fails with that reason. When a task ends (success,
failure, cancel) its placement group is removed and the release recorded. Compute-node
actors, one per node, report what each machine measures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import ray

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.errors import InsufficientResources
from prsm.domain.placement import Bundle, NodeIndex
from prsm.domain.scheduling import (
    PLACEMENT,
    Backlog,
    ClusterLoad,
    Durations,
    Queued,
    TaskProfile,
    backlog,
    bundles_for,
    choose_strategy,
    fits_quota,
    order,
    place_new,
    positions,
    reservation_reason,
)
from prsm.domain.task_types import TASK_TYPES
from prsm.domain.tasks import Task, TaskStatus
from prsm.observability import metrics
from prsm.observability.logging import correlated
from prsm.runtime import actors, allocations, cluster_state, reservations
from prsm.runtime.loop_actor import LoopActor, StoreBuilder
from prsm.runtime.node_monitor import NodeMonitors
from prsm.runtime.node_monitor import actor_name as node_actor_name
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.runtime_views import ClusterView, NodeView, QueuePosition
from prsm.service_layer.task_log import Mutation, TaskLog

log = logging.getLogger("prsm.scheduler")

NAME = "prsm-scheduler"
NODES_EVERY_S = 1.0
ACTIVE = (TaskStatus.SCHEDULED, TaskStatus.RUNNING)
ENDINGS = (ev.TaskSucceeded, ev.TaskFailed, ev.TaskCancelled)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SchedulerOptions:
    """Each tenant's quota (built from ``Settings`` by ``prsm.bootstrap``)."""

    max_running: int  # tasks a tenant may have scheduled or running at once
    max_cpu: float  # CPUs a tenant's scheduled and running tasks may reserve


@dataclass(frozen=True)
class _Published:
    """What the actor methods read (Ray runs them on its own threads): made by the loop's
    thread at the end of a pass and replaced whole, never changed."""

    queue: dict[str, QueuePosition]  # the tasks still queued
    backlog: Backlog
    durations: Durations
    slots: int
    allocations: int
    on_node: dict[str, int]  # node → allocations with a bundle on it


class Scheduler(LoopActor):
    name = "scheduler"

    def __init__(self, build_store: StoreBuilder, settings: dict[str, Any],
                 options: SchedulerOptions) -> None:  # fmt: skip
        super().__init__(build_store, settings)
        self._max_running = options.max_running
        self._max_cpu = options.max_cpu
        self._log = TaskLog(lambda e: e.task_type in TASK_TYPES, source="scheduler")
        self._allocated: dict[str, dict[str, Any]] = {}  # task → placement, while reserved
        self._released: list[tuple[str, str]] = []  # (task, reason) to record
        self._reasons: dict[str, str] = {}  # queued task → why it waits
        self._started: dict[str, datetime] = {}
        self._types: dict[str, str] = {}  # unfinished task → type
        self._requests: dict[str, str] = {}  # task → its request's id, until it is released
        self._releasing: set[str] = set()
        self._durations = Durations()
        self._index = NodeIndex()
        self._facts: list[cluster_state.NodeFacts] = []
        self._monitors = NodeMonitors()
        self._published = _Published({}, {}, Durations(), 1, 0, {})
        self._nodes_at = 0.0
        self._start()

    # --- actor methods (called from Ray's threads: they read what the loop published) -------

    def stand(self, tasks: list[tuple[str, int, str]]) -> list[QueuePosition]:
        """Where each queued task ``(id, priority, type)`` stands: position (1: next),
        estimated seconds to start and why it waits, as the last pass left the queue; a
        task that pass had not seen, where it would stand (``reason`` None)."""
        seen = self._published
        new = [(p, kind) for t, p, kind in tasks if t not in seen.queue]
        guesses = iter(place_new(seen.backlog, new, seen.durations, seen.slots))
        return [seen.queue[t] if t in seen.queue else QueuePosition(*next(guesses), reason=None)
                for t, _, _ in tasks]  # fmt: skip

    def cluster(self) -> ClusterView:
        """The nodes (capacity, free, utilisation, what each machine reports) and totals."""
        seen, facts = self._published, self._facts
        nodes = tuple(
            NodeView(
                node_id=f.node_id, address=f.address, zone=f.zone, region=f.region,
                total=f.total, free=f.free,
                utilisation={k: (1 - f.free[k] / f.total[k]) if f.total[k] else 0.0
                             for k in f.total},
                allocations=seen.on_node.get(f.node_id, 0),
                report=self._monitors.reports.get(f.node_id),
            )
            for f in facts
        )  # fmt: skip
        total = {k: sum(f.total[k] for f in facts) for k in ("CPU", "GPU", "memory")}
        free = {k: sum(f.free[k] for f in facts) for k in ("CPU", "GPU", "memory")}
        return ClusterView(nodes=nodes, total=total, free=free, queued=len(seen.queue),
                           allocations=seen.allocations)  # fmt: skip

    # --- the loop ----------------------------------------------------------------------------

    async def _setup(self) -> None:
        await self._catch_up()
        self._recover()

    async def _pass(self) -> None:
        if time.monotonic() - self._nodes_at > NODES_EVERY_S:
            self._nodes_at = time.monotonic()
            await self._refresh_nodes()
        await self._catch_up()
        await self._admit()
        await self._flush()

    async def _catch_up(self) -> None:
        assert self._store is not None
        ended: set[str] = set()
        for r in await self._log.catch_up(self._store):
            e = r.event
            if isinstance(e, ev.TaskScheduled) and e.placement.get("placement_group"):
                self._allocated[e.task_id] = e.placement
            elif isinstance(e, ev.AllocationReleased):
                self._allocated.pop(e.task_id, None)
                self._requests.pop(e.task_id, None)
            elif isinstance(e, ev.AllocationMoved) and e.task_id in self._allocated:
                self._allocated[e.task_id] = {**self._allocated[e.task_id], "nodes": list(e.nodes)}
            elif isinstance(e, ev.TaskSubmitted):
                self._types[e.task_id] = e.task_type
                self._requests[e.task_id] = e.correlation_id
            elif isinstance(e, ev.TaskStarted):
                self._started[e.task_id] = e.at
            elif isinstance(e, ev.TaskSucceeded) and e.task_id in self._started:
                seconds = (e.at - self._started[e.task_id]).total_seconds()
                self._durations.observe(self._types.get(e.task_id, ""), max(seconds, 0.0))
            task_id = getattr(e, "task_id", "")
            status = self._log.status.get(task_id)
            if isinstance(e, ENDINGS):  # the event itself: the batch may hold its whole life
                if self._up.is_set():  # not the log read again at set-up (after a restart)
                    metrics.task_finished(
                        e, self._types.get(task_id, ""), self._started.get(task_id)
                    )
                self._types.pop(task_id, None)
                self._started.pop(task_id, None)
                if task_id not in self._allocated:
                    self._requests.pop(task_id, None)
            if status is not None and (status.is_terminal or status is TaskStatus.QUEUED):
                ended.add(task_id)
        # After the whole batch: a release recorded later in it (e.g. read again after a
        # restart) must not be made twice.
        for task_id in ended & set(self._allocated) - self._releasing:
            self._release(task_id, self._log.status[task_id].value.lower())

    def _recover(self) -> None:
        """After a restart: allocations whose task ended before the release was recorded."""
        for task_id in list(self._allocated):
            status = self._log.status.get(task_id)
            if status is None or status not in ACTIVE:
                self._release(task_id, "ended")

    def _release(self, task_id: str, reason: str) -> None:
        allocations.remove(task_id)
        self._releasing.add(task_id)
        self._released.append((task_id, reason))

    async def _refresh_nodes(self) -> None:
        self._facts = await asyncio.to_thread(cluster_state.live_nodes)
        index = NodeIndex()
        index.upsert_many(f.as_node() for f in self._facts)
        self._index = index
        live = {f.node_id for f in self._facts}
        self._monitors.follow(live)
        await self._monitors.refresh()
        await self._follow_moves(live)

    async def _follow_moves(self, live: set[str]) -> None:
        """An allocation with a bundle on a node that left is placed again: the domain
        chooses the nodes anew (the task's bundles on live nodes count as free to it), its
        placement group is made again on them, and the move is recorded. While nothing fits,
        it stays as it is and the task's work goes on on its agents left."""
        moved = []
        for task_id, placed in list(self._allocated.items()):
            nodes = placed.get("nodes") or []
            task = self._log.tasks.get(task_id)
            if task_id in self._releasing or task is None or all(n in live for n in nodes):
                continue
            with correlated(task.correlation_id):
                decided = reservations.decide_again(self._index, task, placed)
            if decided is None or not await reservations.make_again(task_id, placed, decided):
                continue
            self._allocated[task_id] = {**placed, "nodes": list(decided.nodes)}
            moved.append((task_id, list(decided.nodes)))
        if moved and self._store is not None:
            at = _now()
            await self._store.append([
                _note(t, ev.AllocationMoved(task_id=t, at=at, nodes=tuple(nodes)), at,
                      self._requests.get(t, "")) for t, nodes in moved])  # fmt: skip

    # --- admission ---------------------------------------------------------------------------

    def _queued(self, now: datetime) -> list[Queued]:
        queued = [self._log.tasks[t] for t in self._log.queued]
        return order((Queued(t.task_id, t.task_type, t.priority, t.submitted_at) for t in queued),
                     now)  # fmt: skip

    def _slots(self) -> int:
        return max(1, min(self._max_running, len(self._allocated) or 1))

    async def _admit(self) -> None:
        assert self._store is not None
        if not self._log.queued:
            self._publish([], _now())
            return
        now = _now()
        queued = self._queued(now)
        running: dict[str, tuple[int, float]] = {}
        for t in self._log.tasks.values():
            if t.status in ACTIVE:
                n, cpu = running.get(t.tenant_id, (0, 0.0))
                running[t.tenant_id] = (n + 1, cpu + t.resources.cpu)
        changes: list[tuple[Task, Mutation]] = []
        reserved: list[str] = []  # tasks given a placement group in this pass
        self._reasons = {}
        for q in queued:
            task = self._log.tasks[q.task_id]
            verdict = self._dependencies(task)
            if verdict == "wait":
                self._reasons[q.task_id] = "waiting for its dependencies"
                continue
            if verdict:
                changes.append((task, partial(Task.fail, at=now, error=verdict)))
                continue
            n, cpu = running.get(task.tenant_id, (0, 0.0))
            why = fits_quota(n, cpu, task.resources.cpu, self._max_running, self._max_cpu)
            if why:
                self._reasons[q.task_id] = why
                continue
            with correlated(task.correlation_id):
                placement = await self._allocate(task)
            if isinstance(placement, str):
                self._reasons[q.task_id] = placement
                continue
            running[task.tenant_id] = (n + 1, cpu + task.resources.cpu)
            changes.append((task, partial(Task.schedule, at=now, placement=placement)))
            if placement.get("placement_group"):
                reserved.append(task.task_id)
        try:
            await self._log.write(self._store, changes, now)
        finally:  # a group reserved for a task that moved on meanwhile (e.g. cancelled) goes
            for task_id in reserved:
                if self._log.status.get(task_id) not in ACTIVE:
                    allocations.remove(task_id)
        for task, _ in changes:  # one line per decision recorded, under its request's id
            if self._log.status.get(task.task_id) is task.status:
                with correlated(task.correlation_id):
                    log.info("task %s %s: %s", task.task_id, task.status.value.lower(),
                             task.error or (task.allocation or {}).get("strategy"))  # fmt: skip
        self._publish([q for q in queued if q.task_id in self._reasons], now)

    def _dependencies(self, task: Task) -> str:
        """``""`` to go, ``"wait"``, or why the task cannot run."""
        for dep in task.dependencies:
            status = self._log.status.get(dep)
            if status is None:
                return f"dependency {dep} does not exist"
            if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                return f"dependency {dep} {status.value.lower()}"
            if status is not TaskStatus.SUCCEEDED:
                return "wait"
        return ""

    async def _allocate(self, task: Task) -> dict[str, Any] | str:
        """Reserve the task's resources; its placement, or why it has to wait."""
        r = task.resources
        memory_gb = r.memory_mb / 1024
        if not reservation_reason(r.cpu, r.gpu, r.memory_mb, task.placement, task.ships_code):
            return {"lane": "pooled", "strategy": "pooled", "bundles": []}  # agents hold it
        load = self._load()
        profile = TaskProfile(cpu=r.cpu, memory_gb=memory_gb, gpu=r.gpu,
                              parallel=len(task.params.get("items", [])) > 1,
                              io_bound=task.task_type == "prompt")  # fmt: skip
        strategy = choose_strategy(profile, load)
        wanted = task.placement.strategy or PLACEMENT[strategy]
        shapes = bundles_for(r.cpu, memory_gb, r.gpu, strategy, task.placement.bundles)
        bundles = [Bundle(cpu, gpu, mem) for cpu, mem, gpu in shapes]
        try:
            decided = self._index.place(bundles, wanted, task.placement.strict,
                                        zone=task.placement.zone)  # fmt: skip
        except InsufficientResources as exc:
            return str(exc)
        return await reservations.reserve(task, bundles, decided, strategy.value, self._index)

    def _load(self) -> ClusterLoad:
        total = sum(f.total["CPU"] for f in self._facts) or 1.0
        free = sum(f.free["CPU"] for f in self._facts)
        memory = sum(f.free["memory"] for f in self._facts) / 2**30
        return ClusterLoad(cpu_used=1.0 - free / total, memory_free_gb=memory)

    def _publish(self, waiting: list[Queued], now: datetime) -> None:
        """For the actor methods: the tasks still queued (position, start estimate, why each
        waits), the work queued per priority, and the allocations per node."""
        metrics.queue(waiting, now)
        slots = self._slots()
        on_node: dict[str, int] = {}
        for placed in self._allocated.values():
            for node in set(placed.get("nodes") or []):
                on_node[node] = on_node.get(node, 0) + 1
        queue = {task_id: QueuePosition(pos, wait, reason=self._reasons[task_id])
                 for task_id, (pos, wait) in positions(waiting, now, self._durations,
                                                       slots).items()}  # fmt: skip
        self._published = _Published(queue, backlog(waiting, self._durations),
                                     self._durations.copy(), slots, len(self._allocated),
                                     on_node)  # fmt: skip

    async def _flush(self) -> None:
        if not self._released:
            return
        assert self._store is not None
        released, self._released = self._released, []
        self._releasing -= {t for t, _ in released}
        at = _now()
        writes = [_note(t, ev.AllocationReleased(task_id=t, at=at, reason=why), at,
                        self._requests.get(t, "")) for t, why in released]  # fmt: skip
        try:
            await self._store.append(writes)
        except Exception:
            self._released = released + self._released
            self._releasing |= {t for t, _ in released}
            raise


def start(build_store: StoreBuilder, settings: dict[str, Any], options: SchedulerOptions) -> Any:
    handle = actors.singleton(Scheduler, NAME, build_store, settings, options)
    ray.get(handle.ready.remote())
    return handle


def handle() -> Any | None:
    return actors.lookup(NAME)


def stop() -> None:
    """Kill the scheduler and the compute-node actors for good (the placement groups stay
    until their tasks end, or Ray stops)."""
    actors.kill(NAME)
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        actors.kill(node_actor_name(node["NodeID"]))


def _note(task_id: str, event: ev.Event, at: datetime, request_id: str) -> StreamWrite:
    """A fact about a task's allocation, appended whatever the task's version (it changes
    no status), under the id of the request that submitted the task."""
    meta = ev.EventMetadata(
        occurred_at=at, source="scheduler", correlation_id=request_id or streams.task(task_id)
    )
    return StreamWrite(streams.task(task_id), None, [ev.NewEvent(event, meta)])
