"""``/v1/agents``: the orchestrator's agents with their load and status; operators drain one.

Agents are shared by every tenant and show no one's tasks; where each runs (its Ray node) is
shown to operators and admins only."""

from __future__ import annotations

from fastapi import APIRouter

from prsm.api.agents import AgentList, AgentOut
from prsm.api.errors import error_responses
from prsm.domain.errors import NotFound, OrchestratorUnavailable
from prsm.domain.policy import Scope, granted
from prsm.serve.deps import Agents, AgentsReader, AgentsWriter, Deps
from prsm.service_layer.runtime_views import AgentView

ERRORS = error_responses(401, 403, 404, 503)
router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)


def _agents(agents: Agents | None) -> Agents:
    if agents is None:
        raise OrchestratorUnavailable("the orchestrator does not run beside this gateway")
    return agents


def _out(agent: AgentView, operator: bool) -> AgentOut:
    """The agent on the wire; where it runs only for operators."""
    return AgentOut.model_validate({**vars(agent), "node_id": agent.node_id if operator else None})


@router.get("", response_model=AgentList, summary="Agents, with their load and status")
async def list_agents(principal: AgentsReader, deps: Deps) -> AgentList:
    operator = Scope.AGENTS_WRITE in granted(principal)
    return AgentList(agents=[_out(a, operator) for a in await _agents(deps.agents).list()])


@router.post("/{agent_id}/drain", status_code=202, response_model=AgentList,
             summary="Drain an agent: no new work; removed and replaced once idle")  # fmt: skip
async def drain(agent_id: str, principal: AgentsWriter, deps: Deps) -> AgentList:
    agents = _agents(deps.agents)
    if not await agents.drain(agent_id):
        raise NotFound(f"agent {agent_id!r} not found")
    return AgentList(agents=[_out(a, operator=True) for a in await agents.list()
                             if a.id == agent_id])  # fmt: skip
