"""Scheduling policy: strategy choice, priority with aging, positions and start estimates,
quotas, bundles — on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prsm.domain.placement import PlacementRequest, PlacementStrategy
from prsm.domain.scheduling import (
    ClusterLoad,
    Durations,
    Queued,
    SchedulingStrategy,
    TaskProfile,
    backlog,
    bundles_for,
    choose_strategy,
    effective_priority,
    fits_quota,
    order,
    place_new,
    positions,
    reservation_reason,
)

S = SchedulingStrategy
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
IDLE = ClusterLoad(cpu_used=0.2, memory_free_gb=64)


@pytest.mark.parametrize(
    ("task", "load", "expected"),
    [
        (TaskProfile(cpu=4, parallel=True), IDLE, S.PARALLEL_CPU),
        (TaskProfile(cpu=4, parallel=True), ClusterLoad(0.81, 64), S.SEQUENTIAL_CPU),
        (TaskProfile(cpu=4, parallel=True), ClusterLoad(0.80, 64), S.PARALLEL_CPU),
        (TaskProfile(cpu=2, memory_gb=16), IDLE, S.MEMORY_OPTIMIZED),
        (TaskProfile(cpu=2, memory_gb=16, parallel=True), ClusterLoad(0.2, 8), S.MEMORY_EFFICIENT),
        (TaskProfile(cpu=1, io_bound=True, parallel=True), IDLE, S.IO_OPTIMIZED),
        (TaskProfile(cpu=1), IDLE, S.BALANCED),
        (TaskProfile(cpu=0.5, parallel=True), IDLE, S.BALANCED),
    ],
)
def test_the_strategy_follows_the_task_profile_and_the_cluster_load(
    task: TaskProfile, load: ClusterLoad, expected: SchedulingStrategy
) -> None:
    assert choose_strategy(task, load) is expected


def test_higher_priority_goes_first_but_a_waiting_task_ages_past_new_ones() -> None:
    old_low = Queued("low", "map", priority=-10, submitted_at=T0)
    at_14 = T0 + timedelta(minutes=14)
    fresh = Queued("high", "map", priority=5, submitted_at=at_14)
    assert [q.task_id for q in order([old_low, fresh], at_14)] == ["high", "low"]
    at_16 = T0 + timedelta(minutes=16)  # low has gained 16 points: -10 + 16 > 5
    fresher = Queued("high2", "map", priority=5, submitted_at=at_16)
    assert effective_priority(old_low, at_16) == pytest.approx(6.0)
    assert [q.task_id for q in order([old_low, fresher], at_16)] == ["low", "high2"]


def test_positions_and_start_estimates_come_from_observed_durations() -> None:
    durations = Durations()
    durations.observe("sweep", 60.0)
    durations.observe("map", 10.0)
    durations.observe("map", 20.0)  # moving average: 10 + 0.3 × 10 = 13
    assert durations.of("map") == pytest.approx(13.0)
    queue = [Queued("a", "sweep", 5, T0), Queued("b", "map", 1, T0), Queued("c", "map", 0, T0)]
    got = positions(queue, T0, durations, slots=2)
    assert got["a"] == (1, 0.0)
    assert got["b"] == (2, pytest.approx(30.0))  # the sweep ahead, over 2 slots
    assert got["c"] == (3, pytest.approx(36.5))
    assert Durations().of("anything") == 10.0  # nothing observed yet


def test_new_tasks_stand_behind_the_queued_work_of_their_priority_and_higher() -> None:
    durations = Durations()
    durations.observe("sweep", 60.0)
    durations.observe("map", 10.0)
    queue = [Queued("a", "sweep", 5, T0), Queued("b", "map", 1, T0), Queued("c", "map", 0, T0)]
    queued = backlog(queue, durations)
    assert queued == {5: (1, 60.0), 1: (1, 10.0), 0: (1, 10.0)}
    new = [(1, "map"), (9, "sweep"), (1, "map"), (0, "map")]
    assert place_new(queued, new, durations, slots=2) == [
        (3, pytest.approx(35.0)),  # behind a and b: (60 + 10) / 2
        (1, 0.0),  # nothing queued at 9 or higher
        (5, pytest.approx(70.0)),  # behind a, b, the first new map and the new sweep
        (7, pytest.approx(80.0)),  # behind everything
    ]
    assert queued == {5: (1, 60.0), 1: (1, 10.0), 0: (1, 10.0)}  # left as it was


def test_tenant_quotas() -> None:
    assert fits_quota(running=1, cpu=2, want_cpu=2, max_running=2, max_cpu=4) == ""
    assert "2 of 2 tasks running" in fits_quota(2, 2, 1, max_running=2, max_cpu=8)
    assert "would exceed 4" in fits_quota(1, 3, 2, max_running=5, max_cpu=4)


def test_parallel_plans_are_split_into_bundles_to_spread() -> None:
    assert bundles_for(4, 8, 0, S.PARALLEL_CPU) == [(1.0, 2.0, 0.0)] * 4
    assert bundles_for(4, 8, 0, S.SEQUENTIAL_CPU) == [(4, 8, 0)]
    assert bundles_for(2, 0, 0, S.IO_OPTIMIZED) == [(0.1, 0, 0)]
    assert bundles_for(3, 6, 0, S.BALANCED, count=3) == [(1.0, 2.0, 0.0)] * 3  # as asked


@pytest.mark.parametrize(
    ("cpu", "gpu", "memory_mb", "where", "reason"),
    [
        (1.0, 0.0, 0, PlacementRequest(), ""),  # the API's default: a pooled agent's slot
        (0.0, 0.0, 0, PlacementRequest(), ""),
        (0.5, 0.0, 0, PlacementRequest(), ""),
        (1.5, 0.0, 0, PlacementRequest(), "1.5 CPU, more than a pooled agent's 1"),
        (1.0, 1.0, 0, PlacementRequest(), "1 GPU"),
        (1.0, 0.0, 512, PlacementRequest(), "512 MiB of memory"),
        (1.0, 0.0, 0, PlacementRequest(bundles=2), "2 bundles"),
        (1.0, 0.0, 0, PlacementRequest(PlacementStrategy.DISTRIBUTION, strict=True), "placement"),
        (0.5, 0.0, 0, PlacementRequest(PlacementStrategy.CONSOLIDATION), "placement"),
        (0.5, 0.0, 0, PlacementRequest(PlacementStrategy.LATENCY, zone="z2"), "placement"),
    ],
)
def test_which_tasks_need_a_reservation_and_which_run_on_pooled_agents(
    cpu: float, gpu: float, memory_mb: int, where: PlacementRequest, reason: str
) -> None:
    found = reservation_reason(cpu, gpu, memory_mb, where)
    assert (found == "") if not reason else (reason in found)
