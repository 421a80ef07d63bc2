"""``/v1/tasks``: submit (single and batch), get, list the caller's own, cancel."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import Discriminator, Tag

from prsm.api.errors import error_responses
from prsm.api.task_params import sent
from prsm.api.tasks import (
    QueueInfo,
    SkillUsed,
    SubtaskOut,
    SubtaskPage,
    TaskBatchCreate,
    TaskBatchOut,
    TaskCreate,
    TaskList,
    TaskOut,
    WorkPlaceOut,
)
from prsm.domain import commands as cmds
from prsm.domain.errors import NotFinished, SchedulerUnavailable, StoreUnavailable
from prsm.domain.placement import PlacementRequest
from prsm.domain.tasks import ResourceRequest, TaskStatus
from prsm.observability import metrics
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, GatewayDeps, TasksReader, TasksWriter
from prsm.service_layer import queries
from prsm.service_layer.handlers import Submission


def _shape(body: Any) -> str:
    return "batch" if isinstance(body, dict) and "tasks" in body else "single"


SubmitBody = Annotated[
    Annotated[TaskCreate, Tag("single")] | Annotated[TaskBatchCreate, Tag("batch")],
    Discriminator(_shape),
]

ERRORS = error_responses(401, 404, 409, 413, 422, 503)
router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=ERRORS)


def _spec(body: TaskCreate, key: str | None) -> cmds.TaskSpec:
    return cmds.TaskSpec(
        task_type=body.type,
        params=sent(body.params),
        priority=body.priority,
        resources=ResourceRequest(**body.resources.model_dump()),
        resources_given="resources" in body.model_fields_set,
        dependencies=tuple(str(d) for d in body.dependencies),
        strategy=body.strategy,
        placement=PlacementRequest(**body.placement.model_dump()),
        idempotency_key=key,
        runtime_env=body.runtime_env.as_dict() if body.runtime_env else {},
    )


@router.post(
    "",
    status_code=201,
    response_model=TaskOut | TaskBatchOut,
    responses={200: {"model": TaskOut | TaskBatchOut, "description": "An idempotent replay"}},
    summary="Submit a task, or a batch of tasks atomically",
    description="A body with `tasks` is a batch. With an `Idempotency-Key`, a retry returns "
    "the task(s) of the first submission (status 200) instead of submitting again.",
)
async def submit_tasks(
    body: SubmitBody,
    response: Response,
    principal: TasksWriter,
    deps: Deps,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> TaskOut | TaskBatchOut:
    if isinstance(body, TaskBatchCreate):
        specs = tuple(
            _spec(t, None if idempotency_key is None else f"{idempotency_key}#{i}")
            for i, t in enumerate(body.tasks)
        )
    else:
        specs = (_spec(body, idempotency_key),)
    command = cmds.SubmitTasks(
        correlation_id=correlation_id.get(), principal=principal, specs=specs, origin=deps.origin
    )

    async def where_they_stand(submissions: list[Submission]) -> list[TaskOut]:
        return await _with_queue([TaskOut.model_validate(s.task) for s in submissions], deps)

    submissions, out = await deps.bus.handle_then(command, where_they_stand)
    created = sum(s.created for s in submissions)
    metrics.TASKS_SUBMITTED.labels(principal.tenant_id).inc(created)
    if not created:
        response.status_code = 200
    return TaskBatchOut(tasks=out) if isinstance(body, TaskBatchCreate) else out[0]


@router.get("", response_model=TaskList, summary="List your own tasks, newest first")
async def list_tasks(
    principal: TasksReader,
    deps: Deps,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, le=queries.MAX_CURSOR, description="`next_cursor` of a page")
    ] = None,
) -> TaskList:
    page = await queries.list_tasks(deps.views, principal, status, limit, cursor)
    return TaskList(
        tasks=[TaskOut.model_validate(t) for t in page.tasks], next_cursor=page.next_cursor
    )


@router.get("/{task_id}", response_model=TaskOut, summary="A task's status")
async def get_task(task_id: str, principal: TasksReader, deps: Deps) -> TaskOut:
    task = TaskOut.model_validate(await queries.get_task(deps.views, principal, task_id))
    places = await queries.where_it_ran(deps.store, task.id)
    task.ran_on = [WorkPlaceOut.model_validate(vars(p)) for p in places]
    submitted = await queries.submitted(deps.store, task.id)
    task.skills = [SkillUsed.model_validate(s) for s in submitted.skills]
    task.runtime_env = submitted.runtime_env or None
    return (await _with_queue([task], deps))[0]


@router.get(
    "/{task_id}/subtasks",
    response_model=SubtaskPage,
    summary="A task's subtasks: outcome, tries, where they ran, errors",
)
async def list_subtasks(
    task_id: str,
    principal: TasksReader,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> SubtaskPage:
    task = await queries.get_task(deps.views, principal, task_id)
    found = await queries.subtasks(deps.store, task.task_id)
    return SubtaskPage(
        subtasks=[SubtaskOut.model_validate(s) for s in found[offset : offset + limit]],
        total=len(found),
    )


@router.get(
    "/{task_id}/result",
    summary="A finished task's result, streamed (a stored one byte for byte)",
    responses={200: {"content": {"application/json": {}}}},
)
async def get_result(task_id: str, principal: TasksReader, deps: Deps) -> Response:
    task = await queries.get_task(deps.views, principal, task_id)
    if not task.status.is_terminal:
        raise NotFinished(f"task {task.task_id} is {task.status.value}: no result yet")
    if task.result_ref is None:
        return Response(json.dumps(task.result, separators=(",", ":")),
                        media_type="application/json")  # fmt: skip
    blobs = deps.blobs
    if blobs is None:
        raise StoreUnavailable("this gateway has no result store")
    size = await asyncio.to_thread(blobs.size, task.result_ref)
    return StreamingResponse(
        blobs.chunks(task.result_ref), media_type="application/json",
        headers={"Content-Length": str(size), "ETag": f'"{task.result_ref}"'},
    )  # fmt: skip


async def _with_queue(tasks: list[TaskOut], deps: GatewayDeps) -> list[TaskOut]:
    """Queued tasks with their position, estimated start and reason, from the scheduler (a
    task it has not seen yet: where it would stand now). Without a scheduler, as they are."""
    queued = [t for t in tasks if t.status in (TaskStatus.SUBMITTED, TaskStatus.QUEUED)]
    if deps.queue is None or not queued:
        return tasks
    try:
        stands = await deps.queue.stand([(t.id, t.priority, t.type) for t in queued])
    except SchedulerUnavailable:
        return tasks  # the status stands without it
    for t, q in zip(queued, stands, strict=True):
        t.queue = QueueInfo(position=q.position, estimated_start_s=q.estimated_start_s,
                            reason=q.reason)  # fmt: skip
    return tasks


@router.delete("/{task_id}", response_model=TaskOut, summary="Cancel a task")
async def cancel_task(task_id: str, principal: TasksWriter, deps: Deps) -> TaskOut:
    command = cmds.CancelTask(
        correlation_id=correlation_id.get(), principal=principal, task_id=task_id
    )
    task = await deps.bus.handle(command)
    metrics.TASKS_CANCELLED.labels(principal.tenant_id).inc()
    return TaskOut.model_validate(await queries.get_task(deps.views, principal, task.task_id))
