"""``/v1/cluster``: the Ray nodes with their capacity, free resources, utilisation and what
each machine reports (its compute-node actor), and the totals. Node addresses and labels are
shown to operators and admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from prsm.domain.errors import SchedulerUnavailable
from prsm.domain.policy import Scope, granted
from prsm.serve.deps import ClusterReader, Deps
from prsm.serve.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (401, 403, 503)}
router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=ERRORS)


class NodeOut(BaseModel):
    node_id: str
    address: str | None = None
    zone: str
    region: str
    total: dict[str, float] = Field(description="CPU, GPU, memory (bytes) the node has")
    free: dict[str, float] = Field(description="What Ray has free on it now")
    utilisation: dict[str, float] = Field(description="Share in use, 0..1, per resource")
    allocations: int = Field(description="Task allocations with a bundle on this node")
    report: dict[str, Any] = Field(description="Its compute-node actor's measurements "
                                   "(psutil; GPUs through NVML where present)")  # fmt: skip


class ClusterOut(BaseModel):
    nodes: list[NodeOut]
    total: dict[str, float]
    free: dict[str, float]
    queued: int = Field(description="Tasks waiting in the queue")
    allocations: int = Field(description="Placement groups held by scheduled and running tasks")


@router.get("", response_model=ClusterOut, summary="Nodes, capacity, free resources, use")
async def cluster(principal: ClusterReader, deps: Deps) -> ClusterOut:
    if deps.queue is None:
        raise SchedulerUnavailable("the scheduler does not run beside this gateway")
    view = await deps.queue.cluster()
    if Scope.AGENTS_WRITE not in granted(principal):  # operators see where nodes are
        view = {**view, "nodes": [{**n, "address": None} for n in view["nodes"]]}
    return ClusterOut.model_validate(view)
