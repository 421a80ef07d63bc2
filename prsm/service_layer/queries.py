"""Read-side queries over the views, with the visibility rule applied."""

from __future__ import annotations

from prsm.domain.errors import InvalidRequest, NotFound
from prsm.domain.identity import Principal, can_see_task
from prsm.domain.tasks import TaskStatus
from prsm.service_layer.handlers import parse_task_id
from prsm.service_layer.ports import TaskViews
from prsm.service_layer.views import TaskPage, TaskQuery, TaskView

MAX_PAGE = 500
MAX_CURSOR = 2**63 - 1  # cursors are log positions: 64-bit integers in both stores


async def get_task(views: TaskViews, principal: Principal, task_id: str) -> TaskView:
    row = await views.get(parse_task_id(task_id))
    if row is None or not can_see_task(principal, row.tenant_id, row.user_id):
        raise NotFound(f"task {task_id} not found")
    return row


async def list_tasks(
    views: TaskViews,
    principal: Principal,
    status: TaskStatus | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> TaskPage:
    """The caller's own tasks, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE}, got {limit}")
    if cursor is not None and not 1 <= cursor <= MAX_CURSOR:
        raise InvalidRequest(f"cursor must be within 1..{MAX_CURSOR}, got {cursor}")
    query = TaskQuery(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        status=status,
        limit=limit,
        before_seq=cursor,
    )
    return await views.list(query)
