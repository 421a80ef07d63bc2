"""Canary rollouts inside the model registry: starting deploys the new version, the route
splits by the rollout's weights once it serves, finished rollouts retire a version in the
same append, tenants never see each other's rollouts, sticky routing, the stats windows, and
the controller's evaluation on an in-memory store with a fake clock."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import registry_events as rev
from prsm.domain.errors import Conflict, NotFound, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.model_registry import ModelRegistry, deployment_key
from prsm.domain.models import SHARED_TENANT, ModelCall, ModelSpec, ModelStatus
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus, VersionStats
from prsm.runtime.rollout_stats import SampleWindows
from prsm.service_layer.models import load_registry
from prsm.service_layer.rollouts import (
    declare_rollouts,
    evaluate_due,
    start_declared,
    start_rollout,
)
from prsm.service_layer.unit_of_work import Context, Writer
from tests.unit.fakes import FakeStore

T0 = datetime(2026, 11, 27, tzinfo=UTC)
ANN = Principal("ann", "lab")
BOB = Principal("bob", "other-lab")
FAST = RolloutPolicy(evaluation_interval_s=10, min_window_s=0, min_samples=20)
V1 = VersionStats(200, 0, 100.0)
V2 = VersionStats(40, 0, 101.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ready_registry() -> ModelRegistry:
    """Ann's lab serves tiny:v1."""
    registry = ModelRegistry()
    registry.deploy(ANN, ModelSpec(name="tiny", version="v1", source="/m/tiny"), T0, False)
    registry.deployed(deployment_key("lab", "tiny", "v1"), T0)
    registry.changes.clear()
    return registry


def status(registry: ModelRegistry, version: str) -> ModelStatus:
    return registry.deployments[deployment_key("lab", "tiny", version)].status


def test_starting_deploys_the_new_version_and_traffic_waits_until_it_serves() -> None:
    registry = ready_registry()
    rollout = registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1), source="/m/tiny2")
    kinds = [type(e).__name__ for e in registry.changes]
    assert kinds == ["ModelDeployRequested", "RolloutStarted"]
    v2 = registry.deployments[deployment_key("lab", "tiny", "v2")]
    assert (v2.spec.source, v2.spec.kv_cache_mb) == ("/m/tiny2", 256)
    assert registry.route(ANN, "tiny").weights == (("v1", 1.0),)  # v2 still deploying
    registry.deployed(deployment_key("lab", "tiny", "v2"), at(2))
    route = registry.route(ANN, "tiny")
    assert route.weights == (("v1", 0.95), ("v2", 0.05)) and route.rollout_id == "r1"
    assert registry.route(ANN, "tiny:v2").weights == (("v2", 1.0),)  # pinning still works
    with pytest.raises(Conflict, match="already in progress"):
        registry.start_rollout(ANN, "r2", "tiny", "v3", FAST, at(3))
    assert rollout.percent == 5.0


def test_a_completed_rollout_retires_the_old_version_in_the_same_append() -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    registry.deployed(deployment_key("lab", "tiny", "v2"), at(2))
    registry.changes.clear()
    t = 1
    while registry.rollouts["r1"].in_progress:
        t += 10
        registry.evaluate_rollout("r1", at(t), V1, V2)
    kinds = [type(e).__name__ for e in registry.changes]
    assert kinds[-2:] == ["RolloutCompleted", "ModelUndeployRequested"]
    assert status(registry, "v1") is ModelStatus.UNDEPLOYING
    assert registry.route(ANN, "tiny").weights == (("v2", 1.0),)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [(VersionStats(40, 10, 100.0), "success rate"), (VersionStats(40, 0, 150.0), "p95")],
)
def test_a_rollback_removes_the_new_version_and_traffic_returns(
    candidate: VersionStats, reason: str
) -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    registry.deployed(deployment_key("lab", "tiny", "v2"), at(2))
    registry.evaluate_rollout("r1", at(11), V1, candidate)
    rollout = registry.rollouts["r1"]
    assert rollout.status is RolloutStatus.ROLLED_BACK
    assert reason in rollout.history[-1].reason  # type: ignore[attr-defined]
    assert status(registry, "v2") is ModelStatus.UNDEPLOYING
    assert registry.route(ANN, "tiny").weights == (("v1", 1.0),)


def test_waiting_for_the_new_version_restarts_its_window_and_a_failed_deploy_aborts() -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    registry.evaluate_rollout("r1", at(11), V1, V2)
    rollout = registry.rollouts["r1"]
    assert rollout.step_started_at == at(11) and rollout.percent == 5.0
    assert "waiting" in rollout.history[-1].reason  # type: ignore[attr-defined]
    registry.failed(deployment_key("lab", "tiny", "v2"), at(12), "out of memory")
    registry.evaluate_rollout("r1", at(21), V1, V2)
    assert rollout.status is RolloutStatus.ABORTED
    assert "out of memory" in rollout.history[-1].reason  # type: ignore[attr-defined]


def test_versions_in_a_rollout_cannot_be_undeployed_until_it_ends() -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    with pytest.raises(Conflict, match="promote or abort"):
        registry.undeploy(ANN, "tiny", "v1", at(2))
    registry.abort_rollout(ANN, "r1", at(3))
    assert status(registry, "v2") is ModelStatus.UNDEPLOYING
    registry.undeploy(ANN, "tiny", "v1", at(4))  # now allowed
    with pytest.raises(Conflict, match="aborted"):
        registry.promote_rollout(ANN, "r1", at(5))


def test_tenants_never_see_or_change_each_others_rollouts() -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    for act in (
        lambda: registry.find_rollout(BOB, "r1"),
        lambda: registry.promote_rollout(BOB, "r1", at(2)),
        lambda: registry.abort_rollout(BOB, "r1", at(2)),
        lambda: registry.start_rollout(BOB, "r2", "tiny", "v3", FAST, at(2)),
    ):
        with pytest.raises(NotFound):
            act()
    assert registry.rollouts_of(BOB) == []
    assert [r.rollout_id for r in registry.rollouts_of(ANN)] == ["r1"]


def test_only_admins_roll_out_shared_models() -> None:
    admin = Principal("root", "ops", frozenset({"admin"}))
    registry = ModelRegistry()
    registry.deploy(admin, ModelSpec(name="tiny", version="v1", source="/m"), T0, True)
    registry.deployed(deployment_key("*", "tiny", "v1"), T0)
    with pytest.raises(PermissionDenied):
        registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    registry.start_rollout(admin, "r1", "tiny", "v2", FAST, at(1))
    assert registry.find_rollout(ANN, "r1").tenant_id == "*"  # readable: it moves their traffic
    with pytest.raises(PermissionDenied):
        registry.abort_rollout(ANN, "r1", at(2))


def test_sticky_routes_keep_each_user_on_one_version_in_proportion() -> None:
    registry = ready_registry()
    sticky = RolloutPolicy(initial_percent=30, sticky=True)
    registry.start_rollout(ANN, "r1", "tiny", "v2", sticky, at(1))
    registry.deployed(deployment_key("lab", "tiny", "v2"), at(2))
    route = registry.route(ANN, "tiny")
    users = [f"user-{i}" for i in range(4000)]
    picks = {u: route.pick(route.draw(u, 0.0)) for u in users}
    assert all(route.pick(route.draw(u, 0.99)) == picks[u] for u in users[:200])
    share = sum(v == "v2" for v in picks.values()) / len(users)
    assert 0.27 < share < 0.33
    random_route = ready_registry().route(ANN, "tiny")
    assert random_route.draw("user-1", 0.42) == 0.42


def test_state_rebuilt_from_the_stream_gives_the_same_step_and_weights() -> None:
    registry = ready_registry()
    registry.start_rollout(ANN, "r1", "tiny", "v2", FAST, at(1))
    registry.deployed(deployment_key("lab", "tiny", "v2"), at(2))
    registry.evaluate_rollout("r1", at(11), V1, V2)
    events: list[ev.Event] = [*_deploy_events(), *registry.changes]
    rebuilt = ModelRegistry.from_events(events, version=len(events))
    assert rebuilt.route(ANN, "tiny").weights == registry.route(ANN, "tiny").weights
    assert rebuilt.rollouts["r1"].percent == 10.0
    assert len(rebuilt.rollouts["r1"].history) == 1


def _deploy_events() -> list[ev.Event]:
    registry = ModelRegistry()
    registry.deploy(ANN, ModelSpec(name="tiny", version="v1", source="/m/tiny"), T0, False)
    registry.deployed(deployment_key("lab", "tiny", "v1"), T0)
    return list(registry.changes)


def test_sample_windows_give_counts_errors_and_p95_since_a_time() -> None:
    windows = SampleWindows()
    now = time.time()

    def call(at: float, ms: float, ok: bool, ttft: float | None, tokens: int,
             caller: str = "lab", in_rollout: bool = True) -> ModelCall:  # fmt: skip
        return ModelCall(tenant="lab", model="tiny", version="v1", caller_tenant=caller,
                         in_rollout=in_rollout, latency_ms=ms, ok=ok, ttft_ms=ttft,
                         tokens=tokens, at=at)  # fmt: skip

    old = [call(now - 100, 999.0, False, None, 0)]
    fresh = [call(now, float(ms), ms % 10 != 0, ms / 2, 4) for ms in range(1, 101)]
    # A request that named v1 itself: in its traffic, not in its rollout's figures.
    pinned = [call(now, 5000.0, True, 1.0, 4, caller="other", in_rollout=False)]
    windows.add(old + fresh + pinned)
    stats = windows.stats("lab", "tiny", "v1", since=now - 10)
    assert (stats.requests, stats.errors, stats.p95_ms) == (100, 10, 95.0)
    assert windows.stats("lab", "tiny", "v1", since=now - 1000).requests == 101
    assert windows.stats("lab", "tiny", "v9", since=0) == VersionStats(0, 0, None)
    # The same samples as traffic over the last minute: the old one is out of the window.
    recent = windows.traffic("lab", "tiny", "v1", window_s=60, caller_tenant="lab")
    assert (recent.requests, recent.errors, recent.tokens_out) == (100, 10, 400)
    assert recent.ttft_p50_ms == 25.0  # the 50th of 0.5 … 50 ms
    assert windows.traffic("lab", "tiny", "v1", window_s=60).requests == 101  # every caller
    assert windows.traffic("lab", "tiny", "v1", window_s=1000).errors == 11
    assert windows.traffic("lab", "tiny", "v9", window_s=60).ttft_p50_ms is None


def test_traffic_over_more_calls_than_kept_says_the_window_it_covers() -> None:
    windows = SampleWindows(max_per_version=100)
    now = time.time()
    windows.add([ModelCall(tenant="lab", model="tiny", version="v1", caller_tenant="lab",
                           in_rollout=False, latency_ms=1.0, ok=True, ttft_ms=1.0, tokens=1,
                           at=now - 50 + i * 0.2) for i in range(200)])  # fmt: skip
    recent = windows.traffic("lab", "tiny", "v1", window_s=60)
    assert recent.requests == 100 and 29 < recent.window_s < 31  # the last 100: 30 s ago on


async def test_the_controller_evaluates_on_schedule_from_the_store() -> None:
    clock = [at(0)]
    store = FakeStore()
    registry = ready_registry()
    registry.start_rollout(ANN, "seed", "tiny", "v0", FAST, at(0))  # unrelated: aborted below
    registry.abort_rollout(ANN, "seed", at(0))
    await _append(store, [*_deploy_events(), *registry.changes])
    ctx = Context(store, lambda: clock[0], "test")
    policy = RolloutPolicy(evaluation_interval_s=10, min_window_s=0, min_samples=5,
                           max_empty_intervals=2, on_no_data=NoDataAction.ABORT)  # fmt: skip
    rollout = await start_rollout(
        cmds.StartRollout(
            correlation_id="c", principal=ANN, model="tiny", version="v2", policy=policy
        ),
        ctx,
    )
    windows = SampleWindows()

    async def stats(tenant: str, model: str, version: str, since: datetime) -> VersionStats:
        return windows.stats(tenant, model, version, since.timestamp())

    writer = Writer(store, lambda: clock[0], "controller", "c")
    assert await evaluate_due(writer, stats) == []  # not due yet
    clock[0] = at(10)
    [held] = await evaluate_due(writer, stats)  # v2 still deploying: waits
    assert held.in_progress and held.step_started_at == at(10)
    await _append(store, [rev.ModelDeployed(tenant_id="lab", name="tiny", version="v2", at=at(11))])
    clock[0] = at(20)
    [empty] = await evaluate_due(writer, stats)  # no traffic yet: one empty interval
    assert empty.empty_intervals == 1
    clock[0] = at(30)
    [aborted] = await evaluate_due(writer, stats)
    assert aborted.status is RolloutStatus.ABORTED and "no data" in aborted.history[-1].reason  # type: ignore[attr-defined]
    after = await load_registry(store)
    assert status(after, "v2") is ModelStatus.UNDEPLOYING
    assert after.rollouts[rollout.rollout_id].status is RolloutStatus.ABORTED


async def _append(store: FakeStore, events: list[ev.Event]) -> None:
    from prsm.domain.streams import MODEL_REGISTRY as STREAM
    from prsm.service_layer.ports import StreamWrite

    current = await load_registry(store)
    meta = ev.EventMetadata(occurred_at=T0, source="test", correlation_id="c")
    await store.append(
        [StreamWrite(STREAM, current.version, [ev.NewEvent(e, meta) for e in events])]
    )


ADMIN = Principal("prsm", SHARED_TENANT, frozenset({"admin"}))


def _declared(rollout_id: str, version: str = "v2") -> rev.RolloutDeclared:
    return rev.RolloutDeclared(
        rollout_id=rollout_id, tenant_id=SHARED_TENANT, model="tiny", at=T0, new_version=version,
        current_version=None, source="/m/tiny2", policy=FAST, declared_by="prsm",
    )  # fmt: skip


async def test_a_declared_rollout_starts_once_its_model_serves_and_only_once() -> None:
    store, clock = FakeStore(), [at(0)]
    writer = Writer(store, lambda: clock[0], "serve-config", "c")
    registry = ModelRegistry()
    registry.deploy(ADMIN, ModelSpec(name="tiny", version="v1", source="/m/tiny"), T0, True)
    await _append(store, list(registry.changes))
    assert await declare_rollouts(writer, [_declared("ro-a")]) == ["ro-a"]
    assert await declare_rollouts(writer, [_declared("ro-b")]) == []  # the same, again: once
    assert await start_declared(writer) == []  # v1 still deploying: the declaration waits
    reloaded = await load_registry(store)
    assert list(reloaded.declared) == ["ro-a"] and not reloaded.rollouts
    registry = await load_registry(store)
    registry.deployed(deployment_key(SHARED_TENANT, "tiny", "v1"), at(1))
    await _append(store, list(registry.changes))
    clock[0] = at(2)
    [started] = await start_declared(writer)
    assert (started.rollout_id, started.current_version, started.new_version) == (
        "ro-a", "v1", "v2")  # fmt: skip
    after = await load_registry(store)
    assert not after.declared and after.rollouts["ro-a"].in_progress
    v2 = after.deployments[deployment_key(SHARED_TENANT, "tiny", "v2")]
    assert (v2.status, v2.spec.source) == (ModelStatus.DEPLOYING, "/m/tiny2")
    assert await start_declared(writer) == []
    # Applying the config again after the rollout started declares nothing new.
    assert await declare_rollouts(writer, [_declared("ro-c")]) == []
    with pytest.raises(PermissionDenied):
        ModelRegistry().declare_rollout(ANN, _declared("ro-d"))


async def test_a_declared_rollout_the_registry_refuses_waits_and_blocks_no_other() -> None:
    store = FakeStore()
    writer = Writer(store, lambda: at(0), "serve-config", "c")
    registry = ModelRegistry()
    for name in ("tiny", "other"):
        spec = ModelSpec(name=name, version="v1", source="/m/tiny")
        registry.deploy(ADMIN, spec, T0, True)
        registry.deployed(deployment_key(SHARED_TENANT, name, "v1"), T0)
    await _append(store, list(registry.changes))
    bad = _declared("ro-bad", version="v 2")  # not a version name
    good = dataclasses.replace(_declared("ro-ok"), model="other")
    assert await declare_rollouts(writer, [bad, good]) == ["ro-bad", "ro-ok"]
    assert [r.rollout_id for r in await start_declared(writer)] == ["ro-ok"]
    assert list((await load_registry(store)).declared) == ["ro-bad"]
