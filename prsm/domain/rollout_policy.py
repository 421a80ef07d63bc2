"""A rollout's policy and the figures it judges by (shared by the events and the aggregate)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from prsm.domain.errors import InvalidRequest


class RolloutStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"
    ABORTED = "ABORTED"


class NoDataAction(StrEnum):
    HOLD = "HOLD"  # keep the step and keep waiting for traffic
    ABORT = "ABORT"  # give up: traffic back to the current version, the new one removed


@dataclass(frozen=True, kw_only=True)
class RolloutPolicy:
    """The platform's defaults (docs/architecture.md, "Rules and where they live"); every field
    can be overridden per rollout (tests use seconds)."""

    initial_percent: float = 5.0
    step_factor: float = 2.0
    evaluation_interval_s: float = 300.0
    min_window_s: float = 3600.0
    min_samples: int = 100
    min_success_rate: float = 0.95
    max_latency_ratio: float = 1.10
    max_empty_intervals: int = 3
    on_no_data: NoDataAction = NoDataAction.HOLD
    sticky: bool = False

    def validated(self) -> RolloutPolicy:
        if not 0 < self.initial_percent < 100:
            raise InvalidRequest("initial_percent must be between 0 and 100 (exclusive)")
        if self.step_factor <= 1:
            raise InvalidRequest("step_factor must be above 1")
        if self.evaluation_interval_s <= 0 or self.min_window_s < 0:
            raise InvalidRequest("evaluation_interval_s must be > 0 and min_window_s >= 0")
        if self.min_samples < 1 or self.max_empty_intervals < 1:
            raise InvalidRequest("min_samples and max_empty_intervals must be at least 1")
        if not 0 <= self.min_success_rate <= 1 or self.max_latency_ratio < 1:
            raise InvalidRequest("min_success_rate in [0, 1], max_latency_ratio >= 1")
        return self


@dataclass(frozen=True)
class VersionStats:
    """One version's figures over an observation window."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def success_rate(self) -> float:
        return 1.0 if self.requests == 0 else (self.requests - self.errors) / self.requests

    def as_dict(self) -> dict[str, float | int | None]:
        return {"requests": self.requests, "errors": self.errors, "p95_ms": self.p95_ms,
                "success_rate": round(self.success_rate, 4)}  # fmt: skip
