"""``/v1/cluster``: the Ray nodes with their capacity, free resources, utilisation and what
each machine reports (its compute-node actor), and the totals. Node addresses, and where the
Ray dashboard and Grafana are, are shown to operators and admins only."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from prsm.api.cluster import ClusterOut, NodeOut
from prsm.api.errors import error_responses
from prsm.domain.errors import SchedulerUnavailable
from prsm.domain.policy import Scope, granted
from prsm.serve.deps import ClusterReader, Deps
from prsm.service_layer.runtime_views import NodeView

ERRORS = error_responses(401, 403, 503)
router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=ERRORS)


@router.get("", response_model=ClusterOut, summary="Nodes, capacity, free resources, use")
async def cluster(principal: ClusterReader, deps: Deps) -> ClusterOut:
    if deps.queue is None:
        raise SchedulerUnavailable("the scheduler does not run beside this gateway")
    view = await deps.queue.cluster()
    operator = Scope.AGENTS_WRITE in granted(principal)  # operators see where nodes are
    return ClusterOut(nodes=[_node(n, operator) for n in view.nodes], total=view.total,
                      free=view.free, queued=view.queued, allocations=view.allocations,
                      dashboard_port=deps.dashboard_port if operator else None,
                      grafana_url=deps.grafana_url if operator else None)  # fmt: skip


def _node(n: NodeView, operator: bool) -> NodeOut:
    return NodeOut(
        node_id=n.node_id, address=n.address if operator else None, zone=n.zone,
        region=n.region, total=n.total, free=n.free, utilisation=n.utilisation,
        allocations=n.allocations, report=asdict(n.report) if n.report is not None else {},
    )  # fmt: skip
