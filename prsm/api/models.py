"""Bodies of ``/v1/deployments`` and of the OpenAI-compatible endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.model_registry import Deployment
from prsm.domain.models import SHARED_TENANT, Accelerator, Framework, ModelStatus, Strategy


class FaultsBody(BaseModel):
    """Faults to inject into one version's requests (drills); zeros remove them."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of requests failed")
    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added to every request")


class DeploymentOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="`name:version`")
    name: str
    version: str
    framework: Framework
    source: str
    strategy: Strategy
    status: ModelStatus
    healthy: bool
    detail: str
    shared: bool = Field(description="A platform model: every tenant calls it, admins manage it")
    replicas: int
    min_replicas: int | None
    max_replicas: int | None
    tensor_parallel: int
    pipeline_parallel: int
    placement: str
    accelerator: Accelerator
    requested_by: str
    created_at: datetime
    updated_at: datetime
    faults: FaultsBody

    @classmethod
    def of(cls, d: Deployment) -> DeploymentOut:
        s = d.spec
        return cls(
            id=d.model_id,
            name=s.name,
            version=s.version,
            framework=s.framework,
            source=s.source,
            strategy=s.strategy,
            status=d.status,
            healthy=d.healthy,
            detail=d.detail,
            shared=d.tenant_id == SHARED_TENANT,
            replicas=s.replicas,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            tensor_parallel=s.tensor_parallel,
            pipeline_parallel=s.pipeline_parallel,
            placement=s.placement,
            accelerator=s.accelerator,
            requested_by=d.requested_by,
            created_at=d.created_at,
            updated_at=d.updated_at,
            faults=FaultsBody(error_rate=d.faults.error_rate, latency_ms=d.faults.latency_ms),
        )


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    versions: list[str] = Field(description="Ready versions (PRSM extension)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200, description="`name` or `name:version`")
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class ChatCompletionBody(_OpenAIBody):
    """OpenAI's chat completion request; fields beyond these pass to the model as they are."""

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class CompletionBody(_OpenAIBody):
    """OpenAI's (legacy) text completion request."""

    prompt: str | list[str] | list[int] | list[list[int]]
