"""``/v1/agents``: the orchestrator's agents with their load and status; operators drain one.

Agents are shared by every tenant and show no one's tasks; where each runs (its Ray node) is
shown to operators and admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from prsm.domain.errors import NotFound, OrchestratorUnavailable
from prsm.domain.policy import Scope, granted
from prsm.serve.deps import Agents, AgentsReader, AgentsWriter, Deps
from prsm.serve.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 503)
}
router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)


class AgentOut(BaseModel):
    id: str
    type: str
    status: str = Field(description="AVAILABLE, BUSY, DRAINING or OFFLINE")
    load: float = Field(description="Share of its capacity in use, 0..1")
    capabilities: list[str]
    running: int = Field(description="Batches of subtasks running now")
    done: int = Field(description="Subtasks run since the agent started")
    speed: dict[str, float] = Field(description="Observed speed per skill (1.0: nominal)")
    last_heartbeat_s: float | None = Field(description="Seconds since its last heartbeat")
    node_id: str | None = None


class AgentList(BaseModel):
    agents: list[AgentOut]


def _agents(agents: Agents | None) -> Agents:
    if agents is None:
        raise OrchestratorUnavailable("the orchestrator does not run beside this gateway")
    return agents


@router.get("", response_model=AgentList, summary="Agents, with their load and status")
async def list_agents(principal: AgentsReader, deps: Deps) -> AgentList:
    operator = Scope.AGENTS_WRITE in granted(principal)
    rows = await _agents(deps.agents).list()
    return AgentList(agents=[
        AgentOut.model_validate({**a, "node_id": a["node_id"] if operator else None})
        for a in rows
    ])  # fmt: skip


@router.post("/{agent_id}/drain", status_code=202, response_model=AgentList,
             summary="Drain an agent: no new work; removed and replaced once idle")  # fmt: skip
async def drain(agent_id: str, principal: AgentsWriter, deps: Deps) -> AgentList:
    agents = _agents(deps.agents)
    if not await agents.drain(agent_id):
        raise NotFound(f"agent {agent_id!r} not found")
    return AgentList(agents=[AgentOut.model_validate(a) for a in await agents.list()
                             if a["id"] == agent_id])  # fmt: skip
