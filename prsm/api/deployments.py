"""What ``POST /v1/deployments`` takes: a body per kind of deployment, told apart by
``framework`` (default ``vllm``) and, for vLLM, by ``strategy`` (default ``SINGLE_NODE``),
so the OpenAPI document says which fields each takes and in what range. What a schema cannot
say is checked when the deployment is recorded (autoscaling bounds in order, a DISTRIBUTED
replica spanning at least two workers)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from prsm.domain.models import Accelerator, Framework, Strategy

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME, examples=["prsm-tiny"],
                            description="Model name clients use")]  # fmt: skip
Version = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["v2"])]
Replicas = Annotated[int, Field(ge=1, le=1024)]
Parallel = Annotated[int, Field(ge=1, le=64)]


class _Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    version: Version
    shared: bool = Field(default=False, description="Usable by every tenant (admins only)")


class _Vllm(_Deployment):
    framework: Literal[Framework.VLLM] = Framework.VLLM
    source: str = Field(min_length=1, max_length=1024,
                        description="A Hugging Face model directory or hub id")  # fmt: skip
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    accelerator: Accelerator = Accelerator.CPU
    cpus_per_worker: int = Field(
        default=1, ge=1, le=1024,
        description="CPUs each engine worker reserves; on CPU, the worker computes with that "
        "many threads",
    )  # fmt: skip
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)
    kv_cache_mb: int = Field(default=256, ge=16, le=4_194_304, description="vLLM-CPU KV cache")


class VllmSingleNode(_Vllm):
    """One vLLM replica."""

    strategy: Literal[Strategy.SINGLE_NODE] = Strategy.SINGLE_NODE
    replicas: Literal[1] = 1


class _Scaled(_Vllm):
    replicas: Replicas = 1
    min_replicas: int | None = Field(default=None, ge=0, le=1024, description="Autoscaling")
    max_replicas: int | None = Field(default=None, ge=1, le=1024, description="Autoscaling")


class VllmReplicated(_Scaled):
    """vLLM replicas: a count, or autoscaling bounds (down to zero)."""

    strategy: Literal[Strategy.REPLICATED]


class VllmDistributed(_Scaled):
    """Replicas each spanning tensor × pipeline parallel workers (at least two)."""

    strategy: Literal[Strategy.DISTRIBUTED]
    tensor_parallel: Parallel = 1
    pipeline_parallel: Parallel = 1


class _Provider(_Deployment):
    source: str = Field(default="", max_length=1024,
                        description="The provider's model name (default: `name`)")  # fmt: skip
    api_key_env: str = Field(
        default="", pattern=r"^([A-Z_][A-Z0-9_]{0,127})?$",
        description="The variable holding the key (default: the provider's usual one)",
    )  # fmt: skip
    base_url: str = Field(default="", max_length=1024, pattern=r"^(https?://.+)?$",
                          description="The API endpoint (default: the provider's)")  # fmt: skip


class OpenAIModel(_Provider):
    """A model OpenAI (or an OpenAI-compatible endpoint) serves."""

    framework: Literal[Framework.OPENAI]


class AnthropicModel(_Provider):
    """A model Anthropic serves."""

    framework: Literal[Framework.ANTHROPIC]


def _kind(body: Any) -> str:
    fields = body if isinstance(body, dict) else vars(body)
    framework = str(fields.get("framework", "vllm"))
    return f"vllm/{fields.get('strategy', 'SINGLE_NODE')!s}" if framework == "vllm" else framework


DeploymentCreate = Annotated[
    Annotated[VllmSingleNode, Tag("vllm/SINGLE_NODE")]
    | Annotated[VllmReplicated, Tag("vllm/REPLICATED")]
    | Annotated[VllmDistributed, Tag("vllm/DISTRIBUTED")]
    | Annotated[OpenAIModel, Tag("openai")]
    | Annotated[AnthropicModel, Tag("anthropic")],
    Discriminator(
        _kind,
        custom_error_type="invalid_kind",
        custom_error_message="framework must be vllm, openai or anthropic, and a vllm "
        "strategy SINGLE_NODE, REPLICATED or DISTRIBUTED",
    ),
]
"""A model version to deploy."""
DEPLOYMENT_CREATE: TypeAdapter[DeploymentCreate] = TypeAdapter(DeploymentCreate)


def spec_fields(body: DeploymentCreate) -> dict[str, Any]:
    """The fields of the domain's ``ModelSpec`` the body gives (the rest keep its defaults)."""
    return body.model_dump(exclude={"shared"})
