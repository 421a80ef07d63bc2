"""The model registry: validation of deployment requests, the lifecycle the controller
drives, tenant visibility, routing, and the use cases on an in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prsm.domain import commands as cmds
from prsm.domain.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.model_registry import ModelRegistry, Route, deployment_key
from prsm.domain.models import Faults, Framework, ModelSpec, ModelStatus, Strategy, validated
from prsm.service_layer.models import (
    change_registry,
    controller_writer,
    deploy_model,
    load_registry,
    undeploy_model,
)
from prsm.service_layer.unit_of_work import Context
from tests.unit.fakes import FakeStore

T0 = datetime(2026, 11, 27, tzinfo=UTC)
ANN = Principal("ann", "lab")
BOB = Principal("bob", "other-lab")
ADMIN = Principal("root", "lab", frozenset({"admin"}))


def spec(**kw: object) -> ModelSpec:
    fields: dict[str, object] = {"name": "tiny", "version": "v1", "source": "/models/tiny"}
    return ModelSpec(**(fields | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "a:b"}, "name"),
        ({"version": ""}, "version"),
        ({"source": ""}, "source"),
        ({"replicas": 2}, "SINGLE_NODE runs one replica"),
        ({"tensor_parallel": 2}, "use DISTRIBUTED"),
        ({"strategy": Strategy.REPLICATED, "replicas": 0}, "replicas must be at least 1"),
        ({"strategy": Strategy.REPLICATED, "min_replicas": 3, "max_replicas": 2}, "autoscaling"),
        ({"strategy": Strategy.REPLICATED, "min_replicas": 0, "max_replicas": 0}, "autoscaling"),
        ({"strategy": Strategy.DISTRIBUTED}, "tensor_parallel × pipeline_parallel >= 2"),
        ({"strategy": Strategy.DISTRIBUTED, "tensor_parallel": 2, "placement": "X"}, "placement"),
        ({"max_model_len": 4}, "max_model_len"),
        ({"framework": Framework.OPENAI, "strategy": Strategy.REPLICATED}, "no strategy"),
        ({"framework": Framework.OPENAI, "api_key_env": "lower"}, "api_key_env"),
        ({"framework": Framework.ANTHROPIC, "base_url": "ftp://x"}, "base_url"),
    ],
)
def test_invalid_deployments_are_refused_with_the_reason(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        validated(spec(**changes))


def test_valid_strategies_and_provider_defaults() -> None:
    assert validated(spec(strategy=Strategy.REPLICATED, replicas=2)).replicas == 2
    scaled = validated(spec(strategy=Strategy.REPLICATED, min_replicas=0, max_replicas=3))
    assert scaled.autoscaling
    sharded = validated(spec(strategy=Strategy.DISTRIBUTED, tensor_parallel=2, pipeline_parallel=2))
    assert sharded.workers_per_replica == 4
    gpt = validated(spec(framework=Framework.OPENAI, source="", name="gpt-4o-mini"))
    assert (gpt.source, gpt.api_key_env) == ("gpt-4o-mini", "OPENAI_API_KEY")
    claude = validated(spec(framework=Framework.ANTHROPIC, source="claude-x"))
    assert claude.api_key_env == "ANTHROPIC_API_KEY"


def test_lifecycle_deploy_ready_health_undeploy() -> None:
    r = ModelRegistry()
    r.deploy(ANN, spec(), T0, shared=False)
    key = deployment_key("lab", "tiny", "v1")
    assert r.deployments[key].status is ModelStatus.DEPLOYING
    with pytest.raises(Conflict, match="already deploying"):
        r.deploy(ANN, spec(), T0, shared=False)
    r.deployed(key, T0)
    r.deployed(key, T0)  # observed twice: recorded once
    r.health(key, T0, True, "serving")  # no change: nothing recorded
    r.health(key, T0, False, "replica died")
    assert [type(e).__name__ for e in r.changes] == [
        "ModelDeployRequested",
        "ModelDeployed",
        "ModelHealthChanged",
    ]
    r.undeploy(ANN, "tiny", "v1", T0)
    r.undeploy(ANN, "tiny", "v1", T0)  # already undeploying: nothing new
    r.undeployed(key, T0)
    assert r.deployments[key].status is ModelStatus.UNDEPLOYED
    assert len(r.changes) == 5
    r.deploy(ANN, spec(), T0, shared=False)  # the same version again, after undeploy
    assert r.deployments[key].status is ModelStatus.DEPLOYING

    rebuilt = ModelRegistry.from_events(r.changes, version=len(r.changes))
    assert rebuilt.deployments == r.deployments


def test_a_failed_deployment_keeps_its_reason_and_can_be_redeployed() -> None:
    r = ModelRegistry()
    r.deploy(ANN, spec(), T0, shared=False)
    key = deployment_key("lab", "tiny", "v1")
    r.failed(key, T0, "weights not found")
    assert (r.deployments[key].status, r.deployments[key].detail) == (
        ModelStatus.FAILED,
        "weights not found",
    )
    r.deploy(ANN, spec(), T0, shared=False)
    assert r.deployments[key].status is ModelStatus.DEPLOYING


def test_tenants_see_their_own_and_shared_models_only() -> None:
    r = ModelRegistry()
    r.deploy(ANN, spec(), T0, shared=False)
    r.deploy(BOB, spec(), T0, shared=False)  # same name and version in another tenant
    with pytest.raises(PermissionDenied):
        r.deploy(ANN, spec(name="pub"), T0, shared=True)
    r.deploy(ADMIN, spec(name="pub"), T0, shared=True)
    assert {(d.tenant_id, d.spec.name) for d in r.visible(ANN)} == {("lab", "tiny"), ("*", "pub")}
    assert {(d.tenant_id, d.spec.name) for d in r.visible(BOB)} == {
        ("other-lab", "tiny"),
        ("*", "pub"),
    }
    with pytest.raises(NotFound):
        r.undeploy(BOB, "nope", "v1", T0)
    with pytest.raises(PermissionDenied):
        r.undeploy(BOB, "pub", "v1", T0)


def test_routes_go_to_the_newest_ready_version_or_a_pinned_one() -> None:
    r = ModelRegistry()
    r.deploy(ANN, spec(version="v1"), T0, shared=False)
    r.deploy(ANN, spec(version="v2"), T0 + timedelta(seconds=1), shared=False)
    with pytest.raises(NotFound, match="not ready"):
        r.route(ANN, "tiny")
    r.deployed(deployment_key("lab", "tiny", "v1"), T0)
    assert r.route(ANN, "tiny").weights == (("v1", 1.0),)
    r.deployed(deployment_key("lab", "tiny", "v2"), T0)
    assert r.route(ANN, "tiny").weights == (("v2", 1.0),)
    assert r.route(ANN, "tiny:v1").weights == (("v1", 1.0),)
    with pytest.raises(NotFound):
        r.route(ANN, "tiny:v9")
    with pytest.raises(NotFound):
        r.route(BOB, "tiny")  # another tenant's model does not exist for Bob


def test_a_weighted_route_splits_by_its_weights() -> None:
    route = Route("tiny", "lab", (("v1", 0.95), ("v2", 0.05)))
    picks = [route.pick(i / 1000) for i in range(1000)]
    assert picks.count("v2") == 50
    assert route.pick(0.999999) == "v2"


async def test_use_cases_append_to_the_registry_stream_and_retry_on_conflict() -> None:
    store = FakeStore()
    ctx = Context(store=store, clock=lambda: T0, source="tests")
    deployed = await deploy_model(
        cmds.DeployModel(correlation_id="c1", principal=ANN, spec=spec()), ctx
    )
    assert deployed.status is ModelStatus.DEPLOYING
    key = deployed.key

    # Another controller records the same observation first: this writer's append conflicts,
    # it decides again on the newer registry, finds nothing left to record.
    real_append = store.append
    raced = False

    async def append_after_a_rival(writes):  # type: ignore[no-untyped-def]
        nonlocal raced
        if not raced:
            raced = True
            await real_append(writes)  # the rival's identical write lands first
        return await real_append(writes)

    store.append = append_after_a_rival  # type: ignore[method-assign]
    writer = controller_writer(store, lambda: T0)
    await change_registry(writer, lambda r: r.deployed(key, T0))
    registry = await load_registry(store)
    assert registry.deployments[key].status is ModelStatus.READY
    assert [r.event.type_name() for r in store.log].count("ModelDeployed") == 1

    gone = await undeploy_model(
        cmds.UndeployModel(correlation_id="c2", principal=ANN, name="tiny", version="v1"), ctx
    )
    assert gone.status is ModelStatus.UNDEPLOYING
    assert {r.metadata.correlation_id for r in store.log} >= {"c1", "c2"}


def test_faults_are_recorded_once_validated_and_kept_on_rebuild() -> None:
    r = ModelRegistry()
    r.deploy(ANN, spec(), T0, shared=False)
    key = deployment_key("lab", "tiny", "v1")
    r.set_faults(ANN, "tiny", "v1", Faults(error_rate=0.5, latency_ms=200), T0)
    r.set_faults(ANN, "tiny", "v1", Faults(error_rate=0.5, latency_ms=200), T0)  # no change
    assert r.deployments[key].faults == Faults(0.5, 200)
    assert [type(e).__name__ for e in r.changes].count("ModelFaultsSet") == 1
    rebuilt = ModelRegistry.from_events(r.changes, version=len(r.changes))
    assert rebuilt.deployments[key].faults.any
    r.set_faults(ANN, "tiny", "v1", Faults(), T0)
    assert not r.deployments[key].faults.any
    with pytest.raises(InvalidRequest):
        Faults(error_rate=1.5)
    with pytest.raises(InvalidRequest):
        Faults(latency_ms=-1)
    with pytest.raises(NotFound):
        r.set_faults(BOB, "tiny", "v1", Faults(0.1), T0)
    r.deploy(ADMIN, spec(name="pub"), T0, shared=True)
    with pytest.raises(PermissionDenied):
        r.set_faults(ANN, "pub", "v1", Faults(0.1), T0)
