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

import copy
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext

DIRECT_ONGOING = "prsm_direct_ongoing"  # requests a replica's own server is answering


def policy(ctx: AutoscalingContext) -> tuple[int | float, dict[str, Any]]:
    """Serve's default policy, applied to Serve's ongoing requests plus the replicas'
    direct ones (each replica's aggregated over the look-back period as Serve's own are:
    averaged, by default)."""
    direct = sum(((ctx.aggregated_metrics or {}).get(DIRECT_ONGOING) or {}).values())
    counted = copy.copy(ctx)  # Serve's context, with the direct requests in its total
    counted.total_num_requests = ctx.total_num_requests + direct
    return replica_queue_length_autoscaling_policy(counted)


class DirectLoad:
    """Mixed into a model replica whose ``_direct`` server (or None) counts the requests it
    is answering (``active``): Serve calls this on each replica of an autoscaled version."""

    _direct: Any

    async def record_autoscaling_stats(self) -> dict[str, float]:
        direct = getattr(self, "_direct", None)
        return {DIRECT_ONGOING: float(direct.active if direct is not None else 0)}
