"""The PRSM Python SDK: ``PrsmClient`` (sync) and ``AsyncPrsmClient``, with typed results.

client = PrsmClient("http://127.0.0.1:8000", token)
task = client.submit("map", {"items": [1, 2, 3]})
client.get(task.id).status
"""

from __future__ import annotations

from typing import Any

import httpx

from prsm.api.agents import AgentList, AgentOut
from prsm.api.cluster import ClusterOut
from prsm.api.keys import KeyCreated, KeyList, KeyOut
from prsm.api.models import DeploymentList, DeploymentOut, ModelList
from prsm.api.rollouts import RolloutOut
from prsm.api.skills import SkillList, SkillOut
from prsm.api.system import Status, WhoAmI
from prsm.api.tasks import (
    TaskCreate,
    TaskList,
    TaskOut,
)
from prsm.client_calls import Call, Calls, M, PrsmAPIError, raise_for
from prsm.client_packages import uploads, with_refs
from prsm.domain.tasks import TaskStatus

__all__ = ["AsyncPrsmClient", "PrsmAPIError", "PrsmClient"]


class PrsmClient(Calls):
    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip

    def _run(self, call: Call[M]) -> M:
        response = self._http.request(
            call.method, call.path, json=call.json, params=call.params, headers=call.headers,
            content=call.content,
        )  # fmt: skip
        return call.parse(response)

    def submit(self, task_type: str, params: dict[str, Any] | None = None, **kw: Any) -> TaskOut:
        """Submit a task; a ``runtime_env`` naming a local folder (``working_dir``) or wheels
        (``pip``, ``py_modules``) has them uploaded first."""
        if kw.get("runtime_env"):
            kw["runtime_env"] = self.ship(kw["runtime_env"])
        return self._run(self._submit(task_type, params, **kw))

    def map(self, skill: str, items: list[Any], reduce: str | None = None, **kw: Any) -> TaskOut:
        """A ``map`` task (``map_reduce`` with ``reduce``) of ``skill`` — a name, or a
        ``package.module:function`` reference to code shipped with ``runtime_env``."""
        return self.submit(*self._map_params(skill, items, reduce), **kw)

    def ship(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        """``runtime_env`` with its local folder and wheels uploaded and named by reference."""
        done = [(u, self._run(self._upload(u)).ref) for u in uploads(runtime_env)]
        return with_refs(runtime_env, done)

    def register_skill(self, name: str, version: str, code: str, runtime_env: dict[str, Any],
                       **fields: Any) -> SkillOut:  # fmt: skip
        """Register a version of a skill (``code``: ``package.module:function``) whose code
        ships in ``runtime_env`` (local folders and wheels are uploaded); ``fields``: kind,
        capability, input_schema, output_schema, timeout_s, doc, shared."""
        env = self.ship(runtime_env)
        return self._run(self._register_skill(name, version, code, env, fields))

    def skills(self) -> list[SkillOut]:
        """The skills you may run: installed, shared, your tenant's."""
        return self._run(Call("GET", "/v1/skills", SkillList)).skills

    def skill(self, name: str) -> list[SkillOut]:
        """The versions of one skill."""
        return self._run(Call("GET", f"/v1/skills/{name}", SkillList)).skills

    def retire_skill(self, name: str, version: str, shared: bool = False) -> SkillOut:
        return self._run(self._retire_skill(name, version, shared))

    def result(self, task_id: str) -> Any:
        """A finished task's result (a stored one, read back in full)."""
        response = self._http.get(f"/v1/tasks/{task_id}/result")
        raise_for(response)
        return response.json()

    def download_result(self, task_id: str, path: str) -> int:
        """Stream a finished task's result into the file ``path``; the bytes written."""
        written = 0
        with self._http.stream("GET", f"/v1/tasks/{task_id}/result") as response:
            if not response.is_success:
                response.read()
                raise_for(response)
            with open(path, "wb") as out:
                for chunk in response.iter_bytes():
                    written += out.write(chunk)
        return written

    def submit_batch(
        self, tasks: list[TaskCreate] | list[dict[str, Any]], idempotency_key: str | None = None
    ) -> list[TaskOut]:
        return self._run(self._submit_batch(tasks, idempotency_key)).tasks

    def get(self, task_id: str) -> TaskOut:
        return self._run(Call("GET", f"/v1/tasks/{task_id}", TaskOut))

    def list_tasks(
        self, status: TaskStatus | None = None, limit: int = 50, cursor: int | None = None
    ) -> TaskList:
        return self._run(self._list(status, limit, cursor))

    def cancel(self, task_id: str) -> TaskOut:
        return self._run(Call("DELETE", f"/v1/tasks/{task_id}", TaskOut))

    def whoami(self) -> WhoAmI:
        return self._run(Call("GET", "/v1/whoami", WhoAmI))

    def ready(self) -> Status:
        return self._run(Call("GET", "/ready", Status))

    def deploy_model(self, name: str, version: str, **fields: Any) -> DeploymentOut:
        """Deploy a model version (see ``DeploymentCreate`` for the fields); it starts
        DEPLOYING: follow it with ``deployment``."""
        return self._run(self._deploy(name, version, **fields))

    def deployment(self, name: str, version: str) -> DeploymentOut:
        return self._run(self._deployment("GET", name, version))

    def deployments(self) -> list[DeploymentOut]:
        return self._run(Call("GET", "/v1/deployments", DeploymentList)).deployments

    def set_faults(
        self, name: str, version: str, error_rate: float = 0.0, latency_ms: int = 0
    ) -> DeploymentOut:
        """Inject faults into a version's traffic (zeros remove them)."""
        body = {"error_rate": error_rate, "latency_ms": latency_ms}
        path = f"/v1/deployments/{name}/{version}/faults"
        return self._run(Call("PUT", path, DeploymentOut, body))

    def undeploy_model(self, name: str, version: str) -> DeploymentOut:
        return self._run(self._deployment("DELETE", name, version))

    def models(self) -> ModelList:
        return self._run(Call("GET", "/v1/models", ModelList))

    def start_rollout(self, model: str, version: str, **fields: Any) -> RolloutOut:
        """Start a canary rollout of ``version`` (fields: see ``RolloutCreate``)."""
        return self._run(self._start_rollout(model, version, **fields))

    def rollouts(self, model: str | None = None) -> list[RolloutOut]:
        return self._run(self._rollouts(model)).rollouts

    def rollout(self, rollout_id: str) -> RolloutOut:
        return self._run(self._rollout(rollout_id))

    def promote_rollout(self, rollout_id: str) -> RolloutOut:
        return self._run(self._rollout(rollout_id, "promote"))

    def abort_rollout(self, rollout_id: str) -> RolloutOut:
        return self._run(self._rollout(rollout_id, "abort"))

    def create_key(
        self, name: str, scopes: list[str] | None = None, expires_in_days: int | None = None
    ) -> KeyCreated:
        """A new API key; ``.key`` holds the key itself, shown only this once."""
        return self._run(self._create_key(name, scopes, expires_in_days))

    def keys(self) -> list[KeyOut]:
        return self._run(Call("GET", "/v1/keys", KeyList)).keys

    def revoke_key(self, key_id: str) -> KeyOut:
        return self._run(Call("DELETE", f"/v1/keys/{key_id}", KeyOut))

    def agents(self) -> list[AgentOut]:
        return self._run(Call("GET", "/v1/agents", AgentList)).agents

    def cluster(self) -> ClusterOut:
        return self._run(Call("GET", "/v1/cluster", ClusterOut))

    def drain_agent(self, agent_id: str) -> AgentOut:
        return self._run(Call("POST", f"/v1/agents/{agent_id}/drain", AgentList)).agents[0]

    def close(self) -> None:
        self._http.close()


class AsyncPrsmClient(Calls):
    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip

    async def _run(self, call: Call[M]) -> M:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params, headers=call.headers,
            content=call.content,
        )  # fmt: skip
        return call.parse(response)

    async def submit(
        self, task_type: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> TaskOut:
        if kw.get("runtime_env"):
            kw["runtime_env"] = await self.ship(kw["runtime_env"])
        return await self._run(self._submit(task_type, params, **kw))

    async def map(
        self, skill: str, items: list[Any], reduce: str | None = None, **kw: Any
    ) -> TaskOut:
        return await self.submit(*self._map_params(skill, items, reduce), **kw)

    async def ship(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        done = [(u, (await self._run(self._upload(u))).ref) for u in uploads(runtime_env)]
        return with_refs(runtime_env, done)

    async def register_skill(self, name: str, version: str, code: str,
                             runtime_env: dict[str, Any], **fields: Any) -> SkillOut:  # fmt: skip
        env = await self.ship(runtime_env)
        return await self._run(self._register_skill(name, version, code, env, fields))

    async def skills(self) -> list[SkillOut]:
        return (await self._run(Call("GET", "/v1/skills", SkillList))).skills

    async def skill(self, name: str) -> list[SkillOut]:
        return (await self._run(Call("GET", f"/v1/skills/{name}", SkillList))).skills

    async def retire_skill(self, name: str, version: str, shared: bool = False) -> SkillOut:
        return await self._run(self._retire_skill(name, version, shared))

    async def result(self, task_id: str) -> Any:
        response = await self._http.get(f"/v1/tasks/{task_id}/result")
        raise_for(response)
        return response.json()

    async def submit_batch(
        self, tasks: list[TaskCreate] | list[dict[str, Any]], idempotency_key: str | None = None
    ) -> list[TaskOut]:
        return (await self._run(self._submit_batch(tasks, idempotency_key))).tasks

    async def get(self, task_id: str) -> TaskOut:
        return await self._run(Call("GET", f"/v1/tasks/{task_id}", TaskOut))

    async def list_tasks(
        self, status: TaskStatus | None = None, limit: int = 50, cursor: int | None = None
    ) -> TaskList:
        return await self._run(self._list(status, limit, cursor))

    async def cancel(self, task_id: str) -> TaskOut:
        return await self._run(Call("DELETE", f"/v1/tasks/{task_id}", TaskOut))

    async def whoami(self) -> WhoAmI:
        return await self._run(Call("GET", "/v1/whoami", WhoAmI))

    async def ready(self) -> Status:
        return await self._run(Call("GET", "/ready", Status))

    async def deploy_model(self, name: str, version: str, **fields: Any) -> DeploymentOut:
        return await self._run(self._deploy(name, version, **fields))

    async def deployment(self, name: str, version: str) -> DeploymentOut:
        return await self._run(self._deployment("GET", name, version))

    async def deployments(self) -> list[DeploymentOut]:
        return (await self._run(Call("GET", "/v1/deployments", DeploymentList))).deployments

    async def undeploy_model(self, name: str, version: str) -> DeploymentOut:
        return await self._run(self._deployment("DELETE", name, version))

    async def models(self) -> ModelList:
        return await self._run(Call("GET", "/v1/models", ModelList))

    async def start_rollout(self, model: str, version: str, **fields: Any) -> RolloutOut:
        return await self._run(self._start_rollout(model, version, **fields))

    async def rollouts(self, model: str | None = None) -> list[RolloutOut]:
        return (await self._run(self._rollouts(model))).rollouts

    async def rollout(self, rollout_id: str) -> RolloutOut:
        return await self._run(self._rollout(rollout_id))

    async def promote_rollout(self, rollout_id: str) -> RolloutOut:
        return await self._run(self._rollout(rollout_id, "promote"))

    async def abort_rollout(self, rollout_id: str) -> RolloutOut:
        return await self._run(self._rollout(rollout_id, "abort"))

    async def create_key(
        self, name: str, scopes: list[str] | None = None, expires_in_days: int | None = None
    ) -> KeyCreated:
        return await self._run(self._create_key(name, scopes, expires_in_days))

    async def keys(self) -> list[KeyOut]:
        return (await self._run(Call("GET", "/v1/keys", KeyList))).keys

    async def revoke_key(self, key_id: str) -> KeyOut:
        return await self._run(Call("DELETE", f"/v1/keys/{key_id}", KeyOut))

    async def agents(self) -> list[AgentOut]:
        return (await self._run(Call("GET", "/v1/agents", AgentList))).agents

    async def cluster(self) -> ClusterOut:
        return await self._run(Call("GET", "/v1/cluster", ClusterOut))

    async def drain_agent(self, agent_id: str) -> AgentOut:
        return (await self._run(Call("POST", f"/v1/agents/{agent_id}/drain", AgentList))).agents[0]

    async def aclose(self) -> None:
        await self._http.aclose()
