"""Model deployments: what a user asks to deploy, and the rules a request must follow."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum

from prsm.domain.errors import InvalidRequest


class Framework(StrEnum):
    VLLM = "vllm"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Strategy(StrEnum):
    SINGLE_NODE = "SINGLE_NODE"  # one replica
    REPLICATED = "REPLICATED"  # a replica count, or autoscaling bounds (down to zero)
    DISTRIBUTED = "DISTRIBUTED"  # tensor / pipeline parallel across a placement group


class Accelerator(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


class ModelStatus(StrEnum):
    DEPLOYING = "DEPLOYING"
    READY = "READY"
    FAILED = "FAILED"
    UNDEPLOYING = "UNDEPLOYING"
    UNDEPLOYED = "UNDEPLOYED"


PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
PROVIDER_KEY_ENV = {Framework.OPENAI: "OPENAI_API_KEY", Framework.ANTHROPIC: "ANTHROPIC_API_KEY"}
SHARED_TENANT = "*"  # a deployment every tenant may use (the platform's own models)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model version to deploy. ``source`` is a Hugging Face model directory or hub id
    (vLLM), or the provider's model name (OpenAI, Anthropic; default: ``name``)."""

    name: str
    version: str
    framework: Framework = Framework.VLLM
    source: str = ""
    strategy: Strategy = Strategy.SINGLE_NODE
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    placement: str = "PACK"
    accelerator: Accelerator = Accelerator.CPU
    cpus_per_worker: int = 1
    max_model_len: int | None = None
    kv_cache_mb: int = 256
    api_key_env: str = ""
    base_url: str = ""

    @property
    def is_provider(self) -> bool:
        return self.framework is not Framework.VLLM

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    @property
    def workers_per_replica(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


@dataclass(frozen=True)
class Faults:
    """Faults injected into one version's requests, as a service mesh does for drills: each
    request waits ``latency_ms`` more, and fails with probability ``error_rate``."""

    error_rate: float = 0.0
    latency_ms: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise InvalidRequest("error_rate must be between 0 and 1")
        if not 0 <= self.latency_ms <= 60_000:
            raise InvalidRequest("latency_ms must be between 0 and 60,000")

    @property
    def any(self) -> bool:
        return self.error_rate > 0 or self.latency_ms > 0


def validated(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its defaults filled in; ``InvalidRequest`` naming the first problem."""
    if not _NAME.match(spec.name):
        raise InvalidRequest("name: 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
    if not _NAME.match(spec.version):
        raise InvalidRequest("version: 1-64 letters, digits, '.', '_' or '-'")
    if spec.max_model_len is not None and not 16 <= spec.max_model_len <= 10_000_000:
        raise InvalidRequest("max_model_len must be between 16 and 10,000,000 tokens")
    if not 1 <= spec.cpus_per_worker <= 1024:
        raise InvalidRequest("cpus_per_worker must be between 1 and 1,024")
    if not 16 <= spec.kv_cache_mb <= 4_194_304:
        raise InvalidRequest("kv_cache_mb must be between 16 and 4,194,304")
    if spec.placement not in PLACEMENTS:
        raise InvalidRequest(f"placement must be one of {', '.join(PLACEMENTS)}")
    if spec.tensor_parallel < 1 or spec.pipeline_parallel < 1:
        raise InvalidRequest("tensor_parallel and pipeline_parallel must be at least 1")
    if spec.is_provider:
        return _validated_provider(spec)
    if not spec.source:
        raise InvalidRequest("source: a Hugging Face model directory or hub id is required")
    _check_strategy(spec)
    return spec


def _validated_provider(spec: ModelSpec) -> ModelSpec:
    if spec.strategy is not Strategy.SINGLE_NODE or spec.autoscaling or spec.replicas != 1:
        raise InvalidRequest(f"{spec.framework} models are served by the provider: no strategy")
    if spec.workers_per_replica != 1:
        raise InvalidRequest(f"{spec.framework} models take no parallel sizes")
    key_env = spec.api_key_env or PROVIDER_KEY_ENV[spec.framework]
    if not _ENV.match(key_env):
        raise InvalidRequest("api_key_env must name an environment variable (A-Z, 0-9, _)")
    if spec.base_url and not spec.base_url.startswith(("http://", "https://")):
        raise InvalidRequest("base_url must be an http:// or https:// URL")
    return dataclasses.replace(spec, source=spec.source or spec.name, api_key_env=key_env)


def _check_strategy(spec: ModelSpec) -> None:
    if spec.strategy is Strategy.SINGLE_NODE:
        if spec.replicas != 1 or spec.autoscaling:
            raise InvalidRequest("SINGLE_NODE runs one replica; use REPLICATED for more")
        if spec.workers_per_replica != 1:
            raise InvalidRequest("SINGLE_NODE takes no parallel sizes; use DISTRIBUTED")
    elif spec.strategy is Strategy.REPLICATED:
        if spec.autoscaling:
            low, high = spec.min_replicas, spec.max_replicas
            if low is None or high is None or not 0 <= low <= high or high < 1:
                raise InvalidRequest(
                    "autoscaling needs 0 <= min_replicas <= max_replicas, max >= 1"
                )
        elif spec.replicas < 1:
            raise InvalidRequest("replicas must be at least 1 (or give min/max_replicas)")
    elif spec.workers_per_replica < 2:
        raise InvalidRequest("DISTRIBUTED needs tensor_parallel × pipeline_parallel >= 2")
    elif spec.replicas < 1 and not spec.autoscaling:
        raise InvalidRequest("replicas must be at least 1")


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model request as a gateway replica routed it: the figures a rollout is judged on
    and a version's traffic is counted from."""

    tenant: str  # the deployment's (SHARED_TENANT for a platform model)
    model: str
    version: str
    caller_tenant: str  # the tenant of who called it
    in_rollout: bool  # routed by a rollout's split (not a request that named the version)
    latency_ms: float
    ok: bool  # served (a 4xx is the caller's failure, not the version's)
    ttft_ms: float | None  # time to first token (None: none came)
    tokens: int  # tokens generated
    at: float  # time.time() at its end


@dataclass(frozen=True)
class ModelTraffic:
    """A model version's requests over a recent window, as every gateway replica routed
    them: how many, how many failed on the platform's side, the median time to first token,
    and the tokens generated."""

    window_s: float  # the window covered (shorter than asked when more samples came than kept)
    requests: int
    errors: int
    ttft_p50_ms: float | None
    tokens_out: int
