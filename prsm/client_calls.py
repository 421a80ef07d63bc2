"""What each call of the SDK sends and how its answer is read (``Calls``), and the error the
gateway's error answers become (``PrsmAPIError``); the clients in ``prsm.client`` only send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from prsm.api.deployments import DEPLOYMENT_CREATE
from prsm.api.keys import KeyCreate, KeyCreated
from prsm.api.models import DeploymentOut
from prsm.api.rollouts import RolloutCreate, RolloutList, RolloutOut
from prsm.api.skills import SkillCreate, SkillOut
from prsm.api.tasks import (
    TASK_CREATE,
    PackageOut,
    Resources,
    TaskBatchCreate,
    TaskBatchOut,
    TaskCreate,
    TaskList,
    TaskOut,
)
from prsm.client_packages import Upload
from prsm.domain.tasks import CoordinationStrategy, TaskStatus

M = TypeVar("M", bound=BaseModel)


class PrsmAPIError(Exception):
    """An error answer of the gateway, with its stable code and correlation id."""

    def __init__(self, status: int, code: str, message: str, correlation_id: str) -> None:
        super().__init__(f"{status} {code}: {message} (correlation id {correlation_id})")
        self.status, self.code, self.message = status, code, message
        self.correlation_id = correlation_id


@dataclass(frozen=True)
class Call(Generic[M]):
    method: str
    path: str
    model: type[M]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None

    def parse(self, response: httpx.Response) -> M:
        raise_for(response)
        return self.model.model_validate_json(response.content)


def raise_for(response: httpx.Response) -> None:
    """Raise the gateway's error answer as a ``PrsmAPIError`` (a read response)."""
    if response.is_success:
        return
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"code": "http_error", "message": response.text[:500]}
    raise PrsmAPIError(
        response.status_code,
        error.get("code", "http_error"),
        error.get("message", ""),
        error.get("correlation_id", response.headers.get("x-correlation-id", "")),
    )


def _sent(body: BaseModel) -> Any:
    """A request body as JSON, without the fields the caller left unset: the server fills
    in its own defaults (one source for each)."""
    return body.model_dump(mode="json", exclude_unset=True)


class Calls:
    """What each API call sends and how its answer is read; the clients only send."""

    @staticmethod
    def _submit(
        task_type: str,
        params: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        resources: Resources | None = None,
        dependencies: list[str] | None = None,
        strategy: CoordinationStrategy | None = None,
        placement: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> Call[TaskOut]:
        """What is left out (``None``) is not sent: the server's defaults apply."""
        given = {"priority": priority, "resources": resources, "dependencies": dependencies,
                 "strategy": strategy, "placement": placement,
                 "runtime_env": runtime_env}  # fmt: skip
        body = TASK_CREATE.validate_python(
            {"type": task_type, "params": params or {}}
            | {k: v for k, v in given.items() if v is not None}
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Call("POST", "/v1/tasks", TaskOut, _sent(body), headers=headers)

    @staticmethod
    def _upload(upload: Upload) -> Call[PackageOut]:
        return Call("POST", "/v1/packages", PackageOut, params={"filename": upload.filename},
                     content=upload.data)  # fmt: skip

    @staticmethod
    def _map_params(skill: str, items: list[Any], reduce: str | None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"skill": skill, "items": items}
        if reduce is not None:
            params["reduce"] = reduce
        return ("map" if reduce is None else "map_reduce"), params

    @staticmethod
    def _register_skill(name: str, version: str, code: str, runtime_env: dict[str, Any],
                        fields: dict[str, Any]) -> Call[SkillOut]:  # fmt: skip
        body = SkillCreate.model_validate(
            {"name": name, "version": version, "code": code, "runtime_env": runtime_env, **fields}
        )
        return Call("POST", "/v1/skills", SkillOut, _sent(body))

    @staticmethod
    def _retire_skill(name: str, version: str, shared: bool) -> Call[SkillOut]:
        return Call("DELETE", f"/v1/skills/{name}/{version}", SkillOut,
                     params={"shared": str(shared).lower()})  # fmt: skip

    @staticmethod
    def _submit_batch(
        tasks: list[TaskCreate] | list[dict[str, Any]], idempotency_key: str | None = None
    ) -> Call[TaskBatchOut]:
        body = _sent(TaskBatchCreate.model_validate({"tasks": tasks}))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Call("POST", "/v1/tasks", TaskBatchOut, body, headers=headers)

    @staticmethod
    def _list(
        status: TaskStatus | None = None, limit: int = 50, cursor: int | None = None
    ) -> Call[TaskList]:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        if cursor is not None:
            params["cursor"] = cursor
        return Call("GET", "/v1/tasks", TaskList, params=params)

    @staticmethod
    def _deploy(name: str, version: str, **fields: Any) -> Call[DeploymentOut]:
        body = DEPLOYMENT_CREATE.validate_python({"name": name, "version": version, **fields})
        return Call("POST", "/v1/deployments", DeploymentOut, _sent(body))

    @staticmethod
    def _deployment(method: str, name: str, version: str) -> Call[DeploymentOut]:
        return Call(method, f"/v1/deployments/{name}/{version}", DeploymentOut)

    @staticmethod
    def _create_key(name: str, scopes: list[str] | None, days: int | None) -> Call[KeyCreated]:
        body = KeyCreate(name=name, scopes=scopes, expires_in_days=days)
        return Call("POST", "/v1/keys", KeyCreated, body.model_dump(mode="json"))

    @staticmethod
    def _start_rollout(model: str, version: str, **fields: Any) -> Call[RolloutOut]:
        body = RolloutCreate.model_validate({"model": model, "version": version, **fields})
        return Call("POST", "/v1/rollouts", RolloutOut, _sent(body))

    @staticmethod
    def _rollouts(model: str | None) -> Call[RolloutList]:
        params = {"model": model} if model else {}
        return Call("GET", "/v1/rollouts", RolloutList, params=params)

    @staticmethod
    def _rollout(rollout_id: str, action: str = "") -> Call[RolloutOut]:
        path = f"/v1/rollouts/{rollout_id}" + (f"/{action}" if action else "")
        return Call("POST" if action else "GET", path, RolloutOut)
