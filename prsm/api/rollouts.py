"""Bodies of ``/v1/rollouts``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.models import SHARED_TENANT
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus, VersionStats
from prsm.domain.rollouts import Rollout

_DEFAULTS = RolloutPolicy()


class PolicyBody(BaseModel):
    """Overrides of the rollout policy; anything left out keeps the platform's default."""

    model_config = ConfigDict(extra="forbid")

    initial_percent: float = Field(_DEFAULTS.initial_percent, gt=0, lt=100)
    step_factor: float = Field(_DEFAULTS.step_factor, gt=1, le=100)
    evaluation_interval_s: float = Field(_DEFAULTS.evaluation_interval_s, gt=0, le=86_400)
    min_window_s: float = Field(_DEFAULTS.min_window_s, ge=0, le=7 * 86_400)
    min_samples: int = Field(_DEFAULTS.min_samples, ge=1, le=1_000_000)
    min_success_rate: float = Field(_DEFAULTS.min_success_rate, ge=0, le=1)
    max_latency_ratio: float = Field(_DEFAULTS.max_latency_ratio, ge=1, le=100)
    max_empty_intervals: int = Field(_DEFAULTS.max_empty_intervals, ge=1, le=10_000)
    on_no_data: NoDataAction = Field(
        _DEFAULTS.on_no_data, description="After max_empty_intervals without enough requests"
    )
    sticky: bool = Field(_DEFAULTS.sticky, description="Each user keeps one version")


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=64, examples=["prsm-tiny"])
    version: str = Field(max_length=64, examples=["v2"], description="The new version")
    current_version: str | None = Field(
        default=None, max_length=64, description="Default: the version serving the model now"
    )
    source: str | None = Field(
        default=None,
        max_length=1024,
        description="Weights of the new version, if not already deployed (default: the "
        "current version's source)",
    )
    policy: PolicyBody = Field(default_factory=PolicyBody)


class StatsOut(BaseModel):
    requests: int
    errors: int
    success_rate: float
    p95_ms: float | None

    @classmethod
    def of(cls, stats: VersionStats) -> StatsOut:
        return cls(
            requests=stats.requests,
            errors=stats.errors,
            success_rate=round(stats.success_rate, 4),
            p95_ms=stats.p95_ms,
        )


class DecisionOut(BaseModel):
    at: datetime
    decision: str = Field(examples=["RolloutAdvanced"])
    percent: float | None
    reason: str | None
    figures: dict[str, Any]


class RolloutOut(BaseModel):
    id: str
    model: str
    owned_by: str
    current_version: str
    new_version: str
    status: RolloutStatus
    percent: float = Field(description="Share of traffic for the new version")
    traffic: dict[str, float] = Field(description="Percent of traffic per version")
    policy: PolicyBody
    started_at: datetime
    started_by: str
    step_started_at: datetime
    next_evaluation_at: datetime | None
    empty_intervals: int
    window: dict[str, StatsOut] = Field(
        default_factory=dict, description="Live figures per version since the step began"
    )
    history: list[DecisionOut] = Field(
        description="Its decisions, in order: every step and ending, and the latest 100 holds"
    )

    @classmethod
    def of(cls, r: Rollout, window: dict[str, VersionStats] | None = None) -> RolloutOut:
        next_at = r.last_evaluated_at + timedelta(seconds=r.policy.evaluation_interval_s)
        return cls(
            id=r.rollout_id,
            model=r.model,
            owned_by="prsm" if r.tenant_id == SHARED_TENANT else r.tenant_id,
            current_version=r.current_version,
            new_version=r.new_version,
            status=r.status,
            percent=r.percent,
            traffic={version: round(100 * share, 3) for version, share in r.weights},
            policy=PolicyBody.model_validate(vars(r.policy)),
            started_at=r.started_at,
            started_by=r.started_by,
            step_started_at=r.step_started_at,
            next_evaluation_at=next_at if r.in_progress else None,
            empty_intervals=r.empty_intervals,
            window={v: StatsOut.of(s) for v, s in (window or {}).items()},
            history=[
                DecisionOut(
                    at=e.at,
                    decision=e.type_name(),
                    percent=getattr(e, "percent", None),
                    reason=getattr(e, "reason", None),
                    figures=getattr(e, "figures", {}),
                )
                for e in r.history
            ],
        )


class RolloutList(BaseModel):
    rollouts: list[RolloutOut]
