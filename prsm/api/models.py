"""Bodies of ``/v1/deployments`` and of the OpenAI-compatible endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.model_registry import Deployment
from prsm.domain.models import (
    SHARED_TENANT,
    Accelerator,
    Framework,
    ModelStatus,
    ModelTraffic,
    Strategy,
)


class FaultsBody(BaseModel):
    """Faults to inject into one version's requests (drills); zeros remove them."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of requests failed")
    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added to every request")


class TrafficOut(BaseModel):
    """A version's requests over the last ``window_s`` seconds, from every gateway replica."""

    window_s: float
    requests: int
    errors: int = Field(description="Requests the platform failed (a 4xx is the caller's)")
    requests_per_s: float
    error_rate: float = Field(description="errors / requests (0 without requests)")
    ttft_p50_ms: float | None = Field(description="Median time to first token; null: no request")
    tokens_per_s: float = Field(description="Tokens generated per second over the window")

    @classmethod
    def of(cls, t: ModelTraffic) -> TrafficOut:
        return cls(
            window_s=t.window_s,
            requests=t.requests,
            errors=t.errors,
            requests_per_s=round(t.requests / t.window_s, 3),
            error_rate=round(t.errors / t.requests, 4) if t.requests else 0.0,
            ttft_p50_ms=None if t.ttft_p50_ms is None else round(t.ttft_p50_ms, 1),
            tokens_per_s=round(t.tokens_out / t.window_s, 2),
        )


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
    cpus_per_worker: int | None = Field(
        description="CPUs each engine worker reserves, and its CPU threads (null for providers)"
    )
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
            cpus_per_worker=None if s.is_provider else s.cpus_per_worker,
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
