"""Built-in system skills: where the code runs, and a model call."""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from prsm.skill import skill


@skill("sys.where", input_schema={"type": "number"}, nominal_s=0.001)
def where(hold_s: float) -> dict[str, Any]:
    """s → where the code runs (Ray node, assigned resources, GPU ids, CUDA_VISIBLE_DEVICES),
    after holding its slot for s seconds (at most 600)"""
    time.sleep(min(max(float(hold_s), 0.0), 600.0))
    context = ray.get_runtime_context()
    assigned: dict[str, float] = context.get_assigned_resources()  # type: ignore[no-untyped-call]
    return {
        "node_id": context.get_node_id(),
        "resources": assigned,
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@skill("llm.complete", kind="llm", capability="llm", nominal_s=1.0)
def complete(item: dict[str, Any]) -> str:
    """a chat completion from a deployed model: {model, prompt, max_tokens} → text"""
    raise RuntimeError("llm.complete is run by its agent, with the task owner's model access")
