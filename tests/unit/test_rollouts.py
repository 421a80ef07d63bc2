"""The canary rollout policy on a fake clock: doubling while healthy, rollback on errors or
latency, the no-data rule, manual promote and abort, and state rebuilt from its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prsm.domain.errors import Conflict, InvalidRequest
from prsm.domain.model_registry import ModelRegistry
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus, VersionStats
from prsm.domain.rollouts import Rollout

T0 = datetime(2026, 11, 27, tzinfo=UTC)
FAST = RolloutPolicy(evaluation_interval_s=10, min_window_s=10, min_samples=20)
HEALTHY_V1 = VersionStats(requests=400, errors=2, p95_ms=100.0)
HEALTHY_V2 = VersionStats(requests=40, errors=0, p95_ms=105.0)


def start(policy: RolloutPolicy = FAST) -> Rollout:
    return Rollout.start("r1", "lab", "tiny", "v1", "v2", policy, T0, "ann")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_healthy_canary_doubles_to_100_percent_and_completes() -> None:
    rollout = start()
    assert rollout.weights == (("v1", 0.95), ("v2", 0.05))
    seen = []
    t = 0
    while rollout.status is RolloutStatus.IN_PROGRESS:
        t += 10
        assert rollout.due(at(t))
        rollout.evaluate(at(t), HEALTHY_V1, HEALTHY_V2)
        seen.append(rollout.percent)
    assert seen == [10, 20, 40, 80, 100]
    assert rollout.status is RolloutStatus.COMPLETED
    assert rollout.weights == (("v2", 1.0),)
    kinds = [type(e).__name__ for e in rollout.changes]
    assert kinds == ["RolloutStarted"] + ["RolloutAdvanced"] * 4 + ["RolloutCompleted"]
    advanced = rollout.changes[1]
    assert advanced.figures["candidate"]["requests"] == 40  # type: ignore[attr-defined]


def test_a_step_is_held_until_its_observation_window_is_over() -> None:
    rollout = start(RolloutPolicy(evaluation_interval_s=10, min_window_s=30, min_samples=20))
    assert not rollout.due(at(5))
    rollout.evaluate(at(10), HEALTHY_V1, HEALTHY_V2)
    rollout.evaluate(at(20), HEALTHY_V1, HEALTHY_V2)
    assert rollout.percent == 5
    rollout.evaluate(at(30), HEALTHY_V1, HEALTHY_V2)
    assert rollout.percent == 10


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (VersionStats(requests=40, errors=3, p95_ms=100.0), "success rate 0.925 below 0.950"),
        (VersionStats(requests=40, errors=0, p95_ms=111.0), "p95 111.0 ms above 1.10"),
    ],
)
def test_errors_or_latency_roll_back_to_the_current_version(
    candidate: VersionStats, reason: str
) -> None:
    rollout = start()
    rollout.evaluate(at(10), HEALTHY_V1, HEALTHY_V2)
    rollout.evaluate(at(20), HEALTHY_V1, candidate)
    assert rollout.status is RolloutStatus.ROLLED_BACK
    assert rollout.weights == (("v1", 1.0),)
    assert reason in rollout.changes[-1].reason  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        rollout.evaluate(at(30), HEALTHY_V1, HEALTHY_V2)


def test_too_few_requests_hold_then_follow_the_no_data_policy() -> None:
    quiet = VersionStats(requests=3, errors=0, p95_ms=90.0)
    holding = start(RolloutPolicy(evaluation_interval_s=10, min_samples=20, max_empty_intervals=2))
    for t in (10, 20, 30, 40):
        holding.evaluate(at(t), HEALTHY_V1, quiet)
    assert (holding.status, holding.percent, holding.empty_intervals) == (
        RolloutStatus.IN_PROGRESS,
        5,
        4,
    )
    aborting = start(
        RolloutPolicy(
            evaluation_interval_s=10,
            min_samples=20,
            max_empty_intervals=2,
            on_no_data=NoDataAction.ABORT,
        )
    )
    aborting.evaluate(at(10), HEALTHY_V1, quiet)
    assert aborting.status is RolloutStatus.IN_PROGRESS
    aborting.evaluate(at(20), HEALTHY_V1, quiet)
    assert aborting.status is RolloutStatus.ABORTED
    assert "no data" in aborting.changes[-1].reason  # type: ignore[attr-defined]


def test_data_after_empty_intervals_resets_the_count() -> None:
    rollout = start(RolloutPolicy(evaluation_interval_s=10, min_window_s=0, min_samples=20))
    rollout.evaluate(at(10), HEALTHY_V1, VersionStats(0, 0, None))
    assert rollout.empty_intervals == 1
    rollout.evaluate(at(20), HEALTHY_V1, HEALTHY_V2)
    assert (rollout.empty_intervals, rollout.percent) == (0, 10)


def test_manual_promote_and_abort() -> None:
    promoted = start()
    promoted.promote(at(1), "ann")
    assert promoted.weights == (("v2", 1.0),)
    aborted = start()
    aborted.abort(at(1), "ann")
    assert (aborted.status, aborted.weights) == (RolloutStatus.ABORTED, (("v1", 1.0),))
    with pytest.raises(Conflict):
        aborted.promote(at(2), "ann")


def test_state_is_rebuilt_from_its_events() -> None:
    rollout = start()
    for t in (10, 20, 30):
        rollout.evaluate(at(t), HEALTHY_V1, HEALTHY_V2)
    rollout.evaluate(at(40), HEALTHY_V1, VersionStats(requests=2, errors=0, p95_ms=None))
    # As production rebuilds it: the rollout's events in the model registry's stream.
    again = ModelRegistry.from_events(rollout.changes, version=len(rollout.changes)).rollouts["r1"]
    assert (again.percent, again.status, again.empty_intervals, again.step_started_at) == (
        rollout.percent,
        rollout.status,
        rollout.empty_intervals,
        rollout.step_started_at,
    )
    assert again.weights == rollout.weights == (("v1", 0.6), ("v2", 0.4))
    assert again.history == rollout.history


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_percent": 0},
        {"initial_percent": 100},
        {"step_factor": 1},
        {"min_samples": 0},
        {"min_success_rate": 1.5},
        {"max_latency_ratio": 0.9},
        {"evaluation_interval_s": 0},
    ],
)
def test_invalid_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidRequest):
        start(RolloutPolicy(**bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        Rollout.start("r", "lab", "tiny", "v1", "v1", FAST, T0, "ann")


def test_a_slow_candidate_is_not_passed_while_the_current_version_has_too_few_requests() -> None:
    """Found end to end: a slow canary starved the current version of requests, and the
    latency check was skipped instead of waiting for a baseline."""
    rollout = start()
    starved_v1 = VersionStats(requests=7, errors=0, p95_ms=20.0)
    slow_v2 = VersionStats(requests=40, errors=0, p95_ms=1500.0)
    rollout.evaluate(at(10), starved_v1, slow_v2)
    assert rollout.status is RolloutStatus.IN_PROGRESS and rollout.percent == 5.0
    assert "requests to v1" in rollout.changes[-1].reason  # type: ignore[attr-defined]
    rollout.evaluate(at(20), VersionStats(requests=30, errors=0, p95_ms=20.0), slow_v2)
    assert rollout.status is RolloutStatus.ROLLED_BACK
    failing = VersionStats(requests=40, errors=20, p95_ms=20.0)
    other = start()
    other.evaluate(at(10), starved_v1, failing)  # errors need no baseline
    assert other.status is RolloutStatus.ROLLED_BACK
