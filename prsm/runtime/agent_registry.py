"""The orchestrator's agents: their actor handles, what each is running, heartbeats, and the
registry events (registered, drained, removed). It keeps the configured number of agents of
each type alive: an agent that dies is removed and a new one takes its place.

An agent type gives the capabilities and the Ray resources of its actors:

| type         | capabilities         | CPUs | batches at once |
|--------------|----------------------|------|-----------------|
| `compute`    | compute              | 0.5  | 2               |
| `simulation` | compute, simulation  | 1.0  | 1               |
| `llm`        | llm                  | 0    | 8 (waits on the model, uses no CPU) |

Those are the *pooled* agents, shared by every task without a reservation. A task with a
reservation gets agents of its own (``reserve``): one per bundle of its placement group,
placed in that bundle with its resources (its code gets the CPUs and GPUs the task asked
for, on the node the scheduler's placement chose for the bundle), able to run every skill
the task needs, and gone with the task. One that dies (its node left) is started again in
its bundle once the scheduler has made the group again on other nodes. A task that ships
code has its agents started with the task's ``runtime_env`` (Ray installs it before the
actor starts); an environment that cannot be set up (a pip package that does not install, a
working_dir that cannot be fetched) ends the reservation with Ray's message
(``Reservation.failed``), and the orchestrator fails the task with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ray.exceptions import RayActorError, RuntimeEnvSetupError

from prsm.domain import events as ev
from prsm.domain.agents import Agent, AgentPool, AgentStatus, Location, Resources
from prsm.domain.skills import COMPUTE, LLM, SIMULATION
from prsm.runtime import actors, allocations, cluster_state
from prsm.runtime.agent import AgentWorker, Heartbeat, LlmBuilder
from prsm.service_layer import agents as registry
from prsm.service_layer.ports import EventStore
from prsm.service_layer.runtime_views import AgentView

log = logging.getLogger("prsm.agents")

HEARTBEAT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 120.0
BUNDLE_START_TIMEOUT_S = 30.0  # its group is placed already: only the actor has to start
RUNTIME_ENV_START_TIMEOUT_S = 600.0  # … and its runtime_env installed (pip, downloads)


@dataclass(frozen=True)
class AgentType:
    capabilities: tuple[str, ...]
    num_cpus: float
    capacity: int
    num_gpus: float = 0.0
    memory_gb: float = 0.0


AGENT_TYPES: dict[str, AgentType] = {
    "compute": AgentType((COMPUTE,), num_cpus=0.5, capacity=2),
    "simulation": AgentType((COMPUTE, SIMULATION), num_cpus=1.0, capacity=1),
    "llm": AgentType((LLM,), num_cpus=0.0, capacity=8),
}


BUNDLE = "bundle"  # the agent type of a task's own agents


@dataclass
class Tracked:
    """What the registry knows of a running agent beyond the pool's ``Agent``."""

    agent_type: str
    node_id: str
    heartbeat: float | None  # time.time() of its last heartbeat
    done: int  # subtasks run, as of that heartbeat
    capacity: int  # batches at once
    task_id: str | None = None  # a task's own agent: that task, and its bundle
    bundle: int | None = None


@dataclass
class Reservation:
    """A task's own agents: one per bundle of its placement group."""

    task_id: str
    bundles: list[tuple[float, float, float]]  # (CPU, GPU, memory GiB) of each
    capabilities: frozenset[str]
    runtime_env: dict[str, Any] | None = None  # as Ray takes it
    pool: AgentPool = field(default_factory=AgentPool)
    agents: dict[int, str] = field(default_factory=dict)  # bundle → agent id
    starting: set[int] = field(default_factory=set)
    complete_once: bool = False  # every bundle has had its agent (work may begin)
    failed: str | None = None  # why its agents cannot start (its runtime_env)


def actor_name(agent_id: str) -> str:
    return f"prsm-agent-{agent_id}"


def _now() -> datetime:
    return datetime.now(UTC)


class AgentRegistry:
    def __init__(self, desired: dict[str, int], build_llm: LlmBuilder | None,
                 settings: dict[str, Any]) -> None:  # fmt: skip
        unknown = set(desired) - set(AGENT_TYPES)
        if unknown:
            raise ValueError(f"unknown agent types {sorted(unknown)}; known: {list(AGENT_TYPES)}")
        self.desired = desired
        self.pool = AgentPool()
        self.handles: dict[str, Any] = {}
        self.inflight: dict[str, int] = {}
        self.info: dict[str, Tracked] = {}
        self.events: list[ev.Event] = []  # to append to the ``agents`` stream
        self.reservations: dict[str, Reservation] = {}
        self._pools: dict[str, AgentPool] = {}  # a task's own agent → its reservation's pool
        self._build_llm = build_llm
        self._settings = settings
        self._starting: dict[str, int] = {}
        self.overdue: dict[str, dict[tuple[str, str], float]] = {}  # agent → (task, key) → s

    # --- membership ----------------------------------------------------------------------

    async def restore(self, store: EventStore) -> None:
        """Take back the agents the store lists whose actors still run (after a restart)."""
        for agent_id, entry in (await registry.registered(store)).items():
            handle = actors.lookup(actor_name(agent_id))
            try:
                if handle is None:
                    raise LookupError("no actor")
                await asyncio.wait_for(handle.heartbeat.remote(), HEARTBEAT_TIMEOUT_S)
            except (LookupError, RayActorError, TimeoutError):
                self.events.append(ev.AgentRemoved(agent_id=agent_id, reason="gone", at=_now()))
                continue
            kind = entry.agent.agent_type
            capacity = AGENT_TYPES[kind].capacity if kind in AGENT_TYPES else 1
            self._add(entry.agent, handle, Tracked(kind, entry.node_id, None, 0, capacity))
            if entry.agent.status is AgentStatus.DRAINING:
                self.pool.get(agent_id).status = AgentStatus.DRAINING

    def ensure(self) -> None:
        """Start agents where a type has fewer than configured (in the background)."""
        have: dict[str, int] = {}
        for agent in self.pool.agents:
            if agent.status is not AgentStatus.DRAINING:
                have[agent.agent_type] = have.get(agent.agent_type, 0) + 1
        for kind, want in self.desired.items():
            for _ in range(want - have.get(kind, 0) - self._starting.get(kind, 0)):
                self._starting[kind] = self._starting.get(kind, 0) + 1
                asyncio.get_running_loop().create_task(self._start(kind))
        for r in self.reservations.values():
            if r.failed is not None:
                continue
            for bundle in range(len(r.bundles)):
                if bundle not in r.agents and bundle not in r.starting:
                    r.starting.add(bundle)
                    asyncio.get_running_loop().create_task(self._start_in_bundle(r, bundle))

    async def _start(self, kind: str) -> None:
        spec = AGENT_TYPES[kind]
        agent_id = f"{kind}-{uuid.uuid4().hex[:8]}"
        try:
            handle = actors.agent(
                AgentWorker, actor_name(agent_id), spec.num_cpus, spec.num_gpus,
                spec.memory_gb, spec.capacity + 1, agent_id, spec.capacity, self._build_llm,
                self._settings,
            )  # fmt: skip
            node_id = await asyncio.wait_for(handle.node_id.remote(), START_TIMEOUT_S)
            region, zone = await asyncio.to_thread(cluster_state.location_of, node_id)
        except Exception:
            log.exception("could not start a %s agent", kind)
            return
        finally:  # (no await between this and ``_add``: ``ensure`` would start another)
            self._starting[kind] -= 1
        shape = Resources(cpu=spec.num_cpus, gpu=spec.num_gpus, memory_gb=spec.memory_gb)
        agent = Agent(agent_id=agent_id, agent_type=kind, capabilities=frozenset(spec.capabilities),
                      shape=shape, location=Location(region, zone))  # fmt: skip
        self._add(agent, handle, Tracked(kind, node_id, None, 0, spec.capacity))
        self.events.append(ev.AgentRegistered(
            agent_id=agent_id, agent_type=kind, capabilities=spec.capabilities, cpu=spec.num_cpus,
            gpu=spec.num_gpus, memory_gb=spec.memory_gb, region=region, zone=zone, node_id=node_id,
            at=_now(),
        ))  # fmt: skip
        log.info("agent %s started on node %s", agent_id, node_id[:8])

    async def _start_in_bundle(self, r: Reservation, bundle: int) -> None:
        cpu, gpu, memory_gb = r.bundles[bundle]
        agent_id = f"{r.task_id}-b{bundle}"
        capacity = max(1, round(cpu))
        try:
            pg = await asyncio.to_thread(allocations.existing, r.task_id)
            if pg is None or not await asyncio.to_thread(allocations.placed, pg):
                return  # its group is being placed (again, after a node left): next pass
            handle = actors.bundle_agent(
                AgentWorker, actor_name(agent_id), pg, bundle, cpu, gpu, memory_gb,
                capacity + 1, r.runtime_env, agent_id, capacity, self._build_llm,
                self._settings,
            )  # fmt: skip
            wait = RUNTIME_ENV_START_TIMEOUT_S if r.runtime_env else BUNDLE_START_TIMEOUT_S
            node_id = await asyncio.wait_for(handle.node_id.remote(), wait)
            region, zone = await asyncio.to_thread(cluster_state.location_of, node_id)
        except RuntimeEnvSetupError as exc:
            r.failed = f"its runtime_env could not be set up: {exc}"[:4000]
            log.warning("task %s: %s", r.task_id, r.failed)
            actors.kill(actor_name(agent_id))
            return
        except Exception:
            if self.reservations.get(r.task_id) is r:  # (not: the task ended, its group went)
                log.exception("could not start the agent of task %s in bundle %d", r.task_id,
                              bundle)  # fmt: skip
            actors.kill(actor_name(agent_id))  # (so that the next try makes a new one)
            return
        finally:
            r.starting.discard(bundle)
        if self.reservations.get(r.task_id) is not r:  # the task ended meanwhile
            actors.kill(actor_name(agent_id))
            return
        shape = Resources(cpu=cpu, gpu=gpu, memory_gb=memory_gb)
        agent = Agent(agent_id=agent_id, agent_type=BUNDLE, capabilities=r.capabilities,
                      shape=shape, location=Location(region, zone))  # fmt: skip
        r.agents[bundle] = agent_id
        r.complete_once = r.complete_once or len(r.agents) == len(r.bundles)
        self._pools[agent_id] = r.pool
        self._add(agent, handle, Tracked(BUNDLE, node_id, None, 0, capacity, r.task_id, bundle))
        log.info("agent %s started in bundle %d on node %s", agent_id, bundle, node_id[:8])

    def _add(self, agent: Agent, handle: Any, info: Tracked) -> None:
        self._pool_of(agent.agent_id).add(agent)
        self.handles[agent.agent_id] = handle
        self.inflight[agent.agent_id] = 0
        self.info[agent.agent_id] = info

    def _pool_of(self, agent_id: str) -> AgentPool:
        return self._pools.get(agent_id, self.pool)

    # --- reservations ------------------------------------------------------------------

    def reserve(self, task_id: str, bundles: list[tuple[float, float, float]],
                capabilities: frozenset[str],
                runtime_env: dict[str, Any] | None) -> None:  # fmt: skip
        """Give a task agents of its own, one in each bundle (started by ``ensure``), in
        ``runtime_env`` if it ships code."""
        if task_id not in self.reservations:
            self.reservations[task_id] = Reservation(task_id, bundles, capabilities, runtime_env)

    def release(self, task_id: str) -> None:
        """The task ended: stop its agents (its placement group's removal would, too)."""
        r = self.reservations.pop(task_id, None)
        if r is None:
            return
        for agent_id in r.agents.values():
            actors.kill(actor_name(agent_id))
            self._forget(agent_id)

    def pool_for(self, task_id: str) -> AgentPool:
        """The agents that may run the task's subtasks: its own, or the pooled ones."""
        r = self.reservations.get(task_id)
        return self.pool if r is None else r.pool

    def can_dispatch(self, task_id: str) -> bool:
        """A task with a reservation waits until each of its bundles has had its agent."""
        r = self.reservations.get(task_id)
        return r is None or r.complete_once

    def _forget(self, agent_id: str) -> None:
        self._pool_of(agent_id).remove(agent_id)
        info = self.info.pop(agent_id)
        del self.handles[agent_id], self.inflight[agent_id]
        self._pools.pop(agent_id, None)
        r = self.reservations.get(info.task_id or "")
        if r is not None and info.bundle is not None:
            r.agents.pop(info.bundle, None)

    def stop_overdue(self, beats: dict[str, Heartbeat]) -> None:
        """Kill each agent running a subtask past its timeout (its call then fails, and
        ``died`` replaces it); ``overdue`` says which subtasks, for how long."""
        for agent_id, beat in beats.items():
            late = {(t, k): s for t, k, s, timeout in beat.running_for if s > timeout}
            if late and agent_id not in self.overdue and agent_id in self.handles:
                self.overdue[agent_id] = late
                log.warning("agent %s overran a subtask's timeout (%s): stopping it",
                            agent_id, ", ".join(f"{t}/{k}" for t, k in late))  # fmt: skip
                actors.kill(actor_name(agent_id))

    def died(self, agent_id: str, reason: str) -> None:
        """Forget a dead agent (its work is given back by the caller); a new one replaces it
        (a task's own agent: in the same bundle)."""
        if agent_id not in self.handles:
            return
        log.warning("agent %s is gone: %s", agent_id, reason)
        own = agent_id in self._pools
        self._forget(agent_id)
        if not own:  # only pooled agents are in the ``agents`` stream
            self.events.append(ev.AgentRemoved(agent_id=agent_id, reason=reason[:300], at=_now()))

    def drain(self, agent_id: str) -> bool:
        """No new work for the agent; it is removed once idle (and replaced)."""
        if agent_id not in self.handles or agent_id in self._pools:
            return False  # (a task's own agents are not drained: they end with the task)
        agent = self.pool.get(agent_id)
        if agent.status is not AgentStatus.DRAINING:
            agent.status = AgentStatus.DRAINING
            self.pool.update(agent)
            self.events.append(ev.AgentDrained(agent_id=agent_id, reason="asked", at=_now()))
        return True

    def retire_drained(self) -> None:
        for agent in list(self.pool.agents):
            if agent.status is AgentStatus.DRAINING and not self.inflight[agent.agent_id]:
                actors.kill(actor_name(agent.agent_id))
                self.died(agent.agent_id, "drained")

    # --- work ------------------------------------------------------------------------------

    def acquire(self, agent_id: str) -> Any:
        self.inflight[agent_id] += 1
        self._set_load(agent_id)
        return self.handles[agent_id]

    def done(self, agent_id: str) -> None:
        if agent_id in self.inflight:
            self.inflight[agent_id] -= 1
            self._set_load(agent_id)

    def free_slots(self, pool: AgentPool) -> int:
        """Agent calls that can start now, over every agent of ``pool`` that takes work."""
        return sum(max(0, self.info[a.agent_id].capacity - self.inflight[a.agent_id])
                   for a in pool.agents if a.status is not AgentStatus.DRAINING)  # fmt: skip

    def _set_load(self, agent_id: str) -> None:
        """Load: the share of its slots running a batch now (counted as batches are sent and
        answered, so a finished batch frees its slot at once); used: what those batches
        hold of its resources, one slot's share each."""
        pool = self._pool_of(agent_id)
        agent = pool.get(agent_id)
        busy = min(1.0, self.inflight[agent_id] / self.info[agent_id].capacity)
        agent.load = busy
        s = agent.shape
        agent.used = Resources(cpu=s.cpu * busy, gpu=s.gpu * busy, memory_gb=s.memory_gb * busy)
        if agent.status is not AgentStatus.DRAINING:
            agent.status = AgentStatus.BUSY if agent.load >= 1.0 else AgentStatus.AVAILABLE
        pool.update(agent)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        """Ask every agent how it is; fold its observed speed into the pool; a dead one is
        removed, a silent one is OFFLINE (no work) until it answers again. The answers."""
        ids = list(self.handles)
        beats: list[Heartbeat | BaseException] = await asyncio.gather(
            *(asyncio.wait_for(self.handles[a].heartbeat.remote(), HEARTBEAT_TIMEOUT_S)
              for a in ids), return_exceptions=True)  # fmt: skip
        answered: dict[str, Heartbeat] = {}
        for agent_id, beat in zip(ids, beats, strict=True):
            if agent_id not in self.handles:
                continue
            if isinstance(beat, RayActorError):
                self.died(agent_id, f"heartbeat: {type(beat).__name__}")
                continue
            pool = self._pool_of(agent_id)
            agent = pool.get(agent_id)
            if isinstance(beat, BaseException):
                if agent.status is not AgentStatus.DRAINING:
                    agent.status = AgentStatus.OFFLINE
                    pool.update(agent)
                continue
            agent.speed = dict(beat.speed)
            info = self.info[agent_id]
            info.heartbeat, info.done = beat.at, beat.done
            if agent.status is AgentStatus.OFFLINE:
                agent.status = AgentStatus.AVAILABLE
            self._set_load(agent_id)
            answered[agent_id] = beat
        return answered

    def snapshot(self) -> list[AgentView]:
        out = []
        own = [a for r in self.reservations.values() for a in r.pool.agents]
        for agent in [*self.pool.agents, *own]:
            info = self.info[agent.agent_id]
            beat = info.heartbeat
            out.append(AgentView(
                id=agent.agent_id, type=agent.agent_type, status=agent.status.value,
                load=agent.load, capabilities=tuple(sorted(agent.capabilities)),
                running=self.inflight[agent.agent_id], done=info.done,
                speed=dict(agent.speed), node_id=info.node_id,
                last_heartbeat_s=None if beat is None else round(time.time() - beat, 3),
            ))  # fmt: skip
        return out
