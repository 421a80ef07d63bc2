"""The agent registry as events (stream ``agents``): agents registered, drained and removed by
the orchestrator. The gateway reads it to refuse, at submit, work that no agent could do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.agents import Agent, AgentStatus, Location, Resources
from prsm.domain.errors import CapabilityMismatch
from prsm.service_layer.ports import EventStore


@dataclass
class Registered:
    agent: Agent
    node_id: str


def fold(history: Iterable[ev.Event]) -> dict[str, Registered]:
    """The agents that are registered and not removed, by id (drained ones as DRAINING)."""
    agents: dict[str, Registered] = {}
    for e in history:
        if isinstance(e, ev.AgentRegistered):
            agent = Agent(
                agent_id=e.agent_id,
                agent_type=e.agent_type,
                capabilities=frozenset(e.capabilities),
                shape=Resources(cpu=e.cpu, gpu=e.gpu, memory_gb=e.memory_gb),
                location=Location(region=e.region, zone=e.zone),
            )
            agents[e.agent_id] = Registered(agent, e.node_id)
        elif isinstance(e, ev.AgentDrained) and e.agent_id in agents:
            agents[e.agent_id].agent.status = AgentStatus.DRAINING
        elif isinstance(e, ev.AgentRemoved):
            agents.pop(e.agent_id, None)
    return agents


async def registered(store: EventStore) -> dict[str, Registered]:
    return fold(r.event for r in await store.read_stream(streams.AGENTS))


async def check_capabilities(store: EventStore, wanted: frozenset[str]) -> None:
    """Raise ``CapabilityMismatch`` naming each wanted capability no registered agent has."""
    if not wanted:
        return
    have: set[str] = set()
    for r in (await registered(store)).values():
        if r.agent.status is not AgentStatus.DRAINING:
            have |= r.agent.capabilities
    missing = sorted(wanted - have)
    if missing:
        raise CapabilityMismatch(
            f"no registered agent has {', '.join(missing)}; agents offer: "
            f"{', '.join(sorted(have)) or 'nothing (no agent is registered)'}"
        )
