"""An autoscaled vLLM version's policy: Serve's default policy over Serve's ongoing requests
plus those the replicas' own servers answer (the edge's), so a version whose load comes
through the edge scales as if Serve had routed it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from prsm.adapters.inference import autoscaling, vllm_serve
from prsm.adapters.inference.autoscaling import DIRECT_ONGOING, DirectLoad
from prsm.domain.models import ModelSpec, Strategy

DEPLOYMENT = DeploymentID(name="prsm:tiny", app_name="tiny-v1")


def context(serve_requests: float, direct: list[float] | None, replicas: int = 2) -> Any:
    ids = [ReplicaID(f"r{i}", DEPLOYMENT) for i in range(replicas)]
    metrics = None if direct is None else {DIRECT_ONGOING: dict(zip(ids, direct, strict=True))}
    config = AutoscalingConfig(min_replicas=0, max_replicas=8, target_ongoing_requests=16)
    return AutoscalingContext(
        deployment_id=DEPLOYMENT, deployment_name=DEPLOYMENT.name, app_name="tiny-v1",
        current_num_replicas=replicas, target_num_replicas=replicas, running_replicas=ids,
        total_num_requests=serve_requests, total_queued_requests=0.0,
        aggregated_metrics=metrics, raw_metrics=None, capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=8, policy_state={}, last_scale_up_time=None,
        last_scale_down_time=None, current_time=None, config=config,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("serve_requests", "direct", "desired"),
    [
        (0.0, [40.0, 24.0], 4.0),  # all through the edge: 64 ongoing, 16 per replica
        (32.0, [16.0, 16.0], 4.0),  # both paths count
        (8.0, [0.0, 0.0], 0.5),  # no direct load: Serve's own figure
        (8.0, None, 0.5),  # no replica has reported yet
    ],
)
def test_the_policy_counts_the_requests_the_replicas_answer_directly(
    serve_requests: float, direct: list[float] | None, desired: float
) -> None:
    assert autoscaling.policy(context(serve_requests, direct))[0] == pytest.approx(desired)
    as_if_serve_routed_all = context(serve_requests + sum(direct or []), None)
    default = replica_queue_length_autoscaling_policy(as_if_serve_routed_all)
    assert autoscaling.policy(context(serve_requests, direct)) == default


def test_an_autoscaled_version_uses_the_policy_by_its_import_path() -> None:
    spec = ModelSpec(name="tiny", version="v1", source="/models/tiny",
                     strategy=Strategy.REPLICATED, min_replicas=0, max_replicas=4)  # fmt: skip
    policy = vllm_serve.deployment_config(spec)["autoscaling_config"]["policy"]
    module, _, name = policy["policy_function"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is autoscaling.policy


async def test_a_replica_reports_what_its_own_server_is_answering() -> None:
    replica = DirectLoad()
    assert await replica.record_autoscaling_stats() == {DIRECT_ONGOING: 0.0}  # no server
    replica._direct = SimpleNamespace(active=3)
    assert await replica.record_autoscaling_stats() == {DIRECT_ONGOING: 3.0}
