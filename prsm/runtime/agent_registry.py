"""The orchestrator's agents: their actor handles, what each is running, heartbeats, and the
registry events (registered, drained, removed). It keeps the configured number of agents of
each type alive: an agent that dies is removed and a new one takes its place.

An agent type gives the capabilities and the Ray resources of its actors:

| type         | capabilities         | CPUs | batches at once |
|--------------|----------------------|------|-----------------|
| `compute`    | compute              | 0.5  | 2               |
| `simulation` | compute, simulation  | 1.0  | 1               |
| `llm`        | llm                  | 0    | 8 (waits on the model, uses no CPU) |
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ray.exceptions import RayActorError

from prsm.domain import events as ev
from prsm.domain.agents import Agent, AgentPool, AgentStatus, Resources
from prsm.domain.skills import COMPUTE, LLM, SIMULATION
from prsm.runtime import actors
from prsm.runtime.agent import AgentWorker, Heartbeat, LlmBuilder
from prsm.service_layer import agents as registry
from prsm.service_layer.ports import EventStore
from prsm.service_layer.runtime_views import AgentView

log = logging.getLogger("prsm.agents")

HEARTBEAT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 120.0


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


@dataclass
class Tracked:
    """What the registry knows of a running agent beyond the pool's ``Agent``."""

    agent_type: str
    node_id: str
    heartbeat: float | None  # time.time() of its last heartbeat
    done: int  # subtasks run, as of that heartbeat


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
        self._build_llm = build_llm
        self._settings = settings
        self._starting: dict[str, int] = {}

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
            self._add(entry.agent, handle, entry.node_id)
            if entry.agent.status is AgentStatus.DRAINING:
                self.pool.get(agent_id).status = AgentStatus.DRAINING

    def ensure(self) -> None:
        """Start agents where a type has fewer than configured (in the background)."""
        have: dict[str, int] = {}
        for agent_id in self.handles:
            if self.pool.get(agent_id).status is not AgentStatus.DRAINING:
                kind = self.info[agent_id].agent_type
                have[kind] = have.get(kind, 0) + 1
        for kind, want in self.desired.items():
            for _ in range(want - have.get(kind, 0) - self._starting.get(kind, 0)):
                self._starting[kind] = self._starting.get(kind, 0) + 1
                asyncio.get_running_loop().create_task(self._start(kind))

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
        except Exception:
            log.exception("could not start a %s agent", kind)
            return
        finally:
            self._starting[kind] -= 1
        shape = Resources(cpu=spec.num_cpus, gpu=spec.num_gpus, memory_gb=spec.memory_gb)
        agent = Agent(agent_id=agent_id, agent_type=kind, capabilities=frozenset(spec.capabilities),
                      shape=shape)  # fmt: skip
        self._add(agent, handle, node_id)
        self.events.append(ev.AgentRegistered(
            agent_id=agent_id, agent_type=kind, capabilities=spec.capabilities, cpu=spec.num_cpus,
            gpu=spec.num_gpus, memory_gb=spec.memory_gb, region="", zone="", node_id=node_id,
            at=_now(),
        ))  # fmt: skip
        log.info("agent %s started on node %s", agent_id, node_id[:8])

    def _add(self, agent: Agent, handle: Any, node_id: str) -> None:
        self.pool.add(agent)
        self.handles[agent.agent_id] = handle
        self.inflight[agent.agent_id] = 0
        self.info[agent.agent_id] = Tracked(agent.agent_type, node_id, heartbeat=None, done=0)

    def died(self, agent_id: str, reason: str) -> None:
        """Forget a dead agent (its work is given back by the caller); a new one replaces it."""
        if agent_id not in self.handles:
            return
        log.warning("agent %s is gone: %s", agent_id, reason)
        del self.handles[agent_id], self.inflight[agent_id], self.info[agent_id]
        self.pool.remove(agent_id)
        self.events.append(ev.AgentRemoved(agent_id=agent_id, reason=reason[:300], at=_now()))

    def drain(self, agent_id: str) -> bool:
        """No new work for the agent; it is removed once idle (and replaced)."""
        if agent_id not in self.handles:
            return False
        agent = self.pool.get(agent_id)
        if agent.status is not AgentStatus.DRAINING:
            agent.status = AgentStatus.DRAINING
            self.pool.update(agent)
            self.events.append(ev.AgentDrained(agent_id=agent_id, reason="asked", at=_now()))
        return True

    def retire_drained(self) -> None:
        for agent_id in list(self.handles):
            drained = self.pool.get(agent_id).status is AgentStatus.DRAINING
            if drained and not self.inflight[agent_id]:
                actors.kill(actor_name(agent_id))
                self.died(agent_id, "drained")

    # --- work ------------------------------------------------------------------------------

    def acquire(self, agent_id: str) -> Any:
        self.inflight[agent_id] += 1
        self._set_load(agent_id)
        return self.handles[agent_id]

    def release(self, agent_id: str) -> None:
        if agent_id in self.inflight:
            self.inflight[agent_id] -= 1
            self._set_load(agent_id)

    def free_slots(self) -> int:
        """Agent calls that can start now, over every agent that takes work."""
        return sum(max(0, AGENT_TYPES[a.agent_type].capacity - self.inflight[a.agent_id])
                   for a in self.pool.agents if a.status is not AgentStatus.DRAINING)  # fmt: skip

    def _set_load(self, agent_id: str) -> None:
        agent = self.pool.get(agent_id)
        agent.load = min(1.0, self.inflight[agent_id] / AGENT_TYPES[agent.agent_type].capacity)
        if agent.status is not AgentStatus.DRAINING:
            agent.status = AgentStatus.BUSY if agent.load >= 1.0 else AgentStatus.AVAILABLE
        self.pool.update(agent)

    async def heartbeats(self) -> None:
        """Ask every agent how it is; fold its observed speed into the pool; a dead one is
        removed, a silent one is OFFLINE (no work) until it answers again."""
        ids = list(self.handles)
        beats: list[Heartbeat | BaseException] = await asyncio.gather(
            *(asyncio.wait_for(self.handles[a].heartbeat.remote(), HEARTBEAT_TIMEOUT_S)
              for a in ids), return_exceptions=True)  # fmt: skip
        for agent_id, beat in zip(ids, beats, strict=True):
            if agent_id not in self.handles:
                continue
            if isinstance(beat, RayActorError):
                self.died(agent_id, f"heartbeat: {type(beat).__name__}")
                continue
            agent = self.pool.get(agent_id)
            if isinstance(beat, BaseException):
                if agent.status is not AgentStatus.DRAINING:
                    agent.status = AgentStatus.OFFLINE
                    self.pool.update(agent)
                continue
            agent.speed = dict(beat.speed)
            info = self.info[agent_id]
            info.heartbeat, info.done = beat.at, beat.done
            if agent.status is AgentStatus.OFFLINE:
                agent.status = AgentStatus.AVAILABLE
            self._set_load(agent_id)

    def snapshot(self) -> list[AgentView]:
        out = []
        for agent in self.pool.agents:
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
