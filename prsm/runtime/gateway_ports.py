"""What the gateway asks of the runtime actors, as the ports it expects
(``prsm.serve.deps.Agents`` and ``Queue``): calls to the named actor, looked up again after
a failure, its absence or restart raised as the actor's ``RuntimeUnavailable``."""

from __future__ import annotations

from typing import Any

from prsm.domain.errors import OrchestratorUnavailable, RuntimeUnavailable, SchedulerUnavailable
from prsm.runtime import actors
from prsm.service_layer.runtime_views import AgentView, ClusterView, QueuePosition


class _ActorPort:
    """Calls to a named runtime actor, looked up again after a failure."""

    def __init__(self, name: str, what: str, error: type[RuntimeUnavailable]) -> None:
        self._name = name
        self._what = what
        self._error = error
        self._handle: Any = None

    async def _call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayActorError

        if self._handle is None:
            self._handle = actors.lookup(self._name)
        if self._handle is None:
            raise self._error(f"the {self._what} is not running")
        try:
            return await getattr(self._handle, method).remote(*args)
        except RayActorError as exc:
            self._handle = None
            raise self._error(f"the {self._what} is restarting; retry") from exc


class OrchestratorAgents(_ActorPort):
    """The orchestrator's agents (``serve.deps.Agents``)."""

    def __init__(self) -> None:
        from prsm.runtime.orchestrator import NAME

        super().__init__(NAME, "orchestrator", OrchestratorUnavailable)

    async def list(self) -> list[AgentView]:
        agents: list[AgentView] = await self._call("agents")
        return agents

    async def drain(self, agent_id: str) -> bool:
        return bool(await self._call("drain", agent_id))


class SchedulerQueue(_ActorPort):
    """The scheduler's queue and cluster view (``serve.deps.Queue``)."""

    def __init__(self) -> None:
        from prsm.runtime.scheduler import NAME

        super().__init__(NAME, "scheduler", SchedulerUnavailable)

    async def stand(self, tasks: list[tuple[str, int, str]]) -> list[QueuePosition]:
        out: list[QueuePosition] = await self._call("stand", tasks)
        return out

    async def cluster(self) -> ClusterView:
        view: ClusterView = await self._call("cluster")
        return view
