"""``/v1/cluster``: the Ray nodes with their capacity, free resources, utilisation and what
each machine reports (its compute-node actor), and the totals. Node addresses and labels are
shown to operators and admins only."""

from __future__ import annotations

from fastapi import APIRouter

from prsm.api.cluster import ClusterOut
from prsm.api.errors import error_responses
from prsm.domain.errors import SchedulerUnavailable
from prsm.domain.policy import Scope, granted
from prsm.serve.deps import ClusterReader, Deps

ERRORS = error_responses(401, 403, 503)
router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=ERRORS)


@router.get("", response_model=ClusterOut, summary="Nodes, capacity, free resources, use")
async def cluster(principal: ClusterReader, deps: Deps) -> ClusterOut:
    if deps.queue is None:
        raise SchedulerUnavailable("the scheduler does not run beside this gateway")
    view = await deps.queue.cluster()
    if Scope.AGENTS_WRITE not in granted(principal):  # operators see where nodes are
        view = {**view, "nodes": [{**n, "address": None} for n in view["nodes"]]}
    return ClusterOut.model_validate(view)
