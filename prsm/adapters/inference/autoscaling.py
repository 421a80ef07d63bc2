"""Autoscaling a vLLM version by all the requests its replicas answer, Serve's and the edge's.

Serve scales a deployment by the requests it routes to it (its ongoing requests per
replica against ``target_ongoing_requests``). PRSM's edge sends most chat and completion
requests straight to a replica's own HTTP server (``direct_http``), past Serve: by Serve's
count alone an autoscaled version under load would look idle and scale down. So each replica
reports the requests its own server is answering as a custom autoscaling metric
(``record_autoscaling_stats``, Ray Serve's hook), and the version's policy adds them to
Serve's count before it applies Serve's default policy (same target, delays, bounds and
smoothing)."""

from __future__ import annotations

from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext

DIRECT_ONGOING = "prsm_direct_ongoing"  # requests a replica's own server is answering


def policy(ctx: AutoscalingContext) -> tuple[int | float, dict[str, Any]]:
    """Serve's default policy, applied to Serve's ongoing requests plus the replicas'
    direct ones (each replica's averaged over the look-back period, as Serve's own are)."""
    direct = sum(((ctx.aggregated_metrics or {}).get(DIRECT_ONGOING) or {}).values())
    counted = AutoscalingContext(
        deployment_id=ctx.deployment_id, deployment_name=ctx.deployment_name,
        app_name=ctx.app_name, current_num_replicas=ctx.current_num_replicas,
        target_num_replicas=ctx.target_num_replicas, running_replicas=ctx.running_replicas,
        total_num_requests=ctx.total_num_requests + direct,
        total_queued_requests=ctx.total_queued_requests,
        aggregated_metrics=ctx.aggregated_metrics, raw_metrics=ctx.raw_metrics,
        capacity_adjusted_min_replicas=ctx.capacity_adjusted_min_replicas,
        capacity_adjusted_max_replicas=ctx.capacity_adjusted_max_replicas,
        policy_state=ctx.policy_state, last_scale_up_time=ctx.last_scale_up_time,
        last_scale_down_time=ctx.last_scale_down_time, current_time=ctx.current_time,
        config=ctx.config,
    )  # fmt: skip
    return replica_queue_length_autoscaling_policy(counted)


class DirectLoad:
    """Mixed into a model replica whose ``_direct`` server (or None) counts the requests it
    is answering (``active``): Serve calls this on each replica of an autoscaled version."""

    _direct: Any

    async def record_autoscaling_stats(self) -> dict[str, float]:
        direct = getattr(self, "_direct", None)
        return {DIRECT_ONGOING: float(direct.active if direct is not None else 0)}
