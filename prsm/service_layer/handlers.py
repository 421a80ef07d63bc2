"""Command handlers: module functions ``(command, context)``, registered in ``HANDLERS``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import runtime_env, streams
from prsm.domain.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from prsm.domain.identity import Principal, can_see_task
from prsm.domain.ids import new_id
from prsm.domain.placement import PlacementRequest
from prsm.domain.policy import Scope, granted
from prsm.domain.skills import LLM, Skill, UnknownSkill
from prsm.domain.task_types import Plan, plan
from prsm.domain.tasks import ResourceRequest, Task, request_hash
from prsm.service_layer import agents, models, rollouts, skills
from prsm.service_layer.ports import EventStore, StreamWrite
from prsm.service_layer.unit_of_work import (
    Context,
    Writer,
    append_leaving_out_conflicts,
    decide_and_append,
)

_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1e7a-3f0e-4c43-9d8e-5b2d7c1a9e10")


@dataclass(frozen=True)
class Submission:
    task: Task
    created: bool  # False: an idempotent replay of an earlier submission


def parse_task_id(raw: str) -> str:
    """Task ids are UUIDs; anything else names no task."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"task {raw!r} not found") from None


def task_id_for(principal: Principal, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return new_id()
    name = f"{principal.tenant_id}\x00{principal.user_id}\x00{idempotency_key}"
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name))


def _write(task: Task, writer: Writer) -> StreamWrite:
    return StreamWrite(streams.task(task.task_id), task.version, writer.events(task.changes))


def _new_task(spec: cmds.TaskSpec, p: Plan, cmd: cmds.SubmitTasks, ctx: Context) -> Task:
    principal, strategy = cmd.principal, p.strategy
    env = _environment(spec, p)
    resources = _resources(spec, p)
    payload = {
        "task_type": spec.task_type,
        "params": spec.params,
        "priority": spec.priority,
        "resources": [resources.cpu, resources.gpu, resources.memory_mb],
        "dependencies": list(spec.dependencies),
        "strategy": strategy.value,
    }
    if spec.placement != PlacementRequest():  # (absent before placement requests existed)
        payload["placement"] = spec.placement.as_dict()
    if spec.runtime_env:  # (absent before tasks shipped code)
        payload["runtime_env"] = spec.runtime_env
    return Task.submit(
        ev.TaskSubmitted(
            task_id=task_id_for(principal, spec.idempotency_key),
            task_type=spec.task_type,
            params=spec.params,
            priority=spec.priority,
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            cpu=resources.cpu,
            gpu=resources.gpu,
            memory_mb=resources.memory_mb,
            dependencies=spec.dependencies,
            strategy=strategy.value,
            submitted_at=ctx.clock(),
            # Only a key can be replayed: without one the id is new and the hash unused.
            request_hash=request_hash(payload) if spec.idempotency_key else "",
            placement=spec.placement.as_dict(),
            origin_region=cmd.origin[0],
            origin_zone=cmd.origin[1],
            skills=[_pinned(s, env).record() for s in p.skills],
            runtime_env=env,
            correlation_id=cmd.correlation_id,
        )
    )


def _pinned(skill: Skill, env: dict[str, Any]) -> Skill:
    """A skill as the task records it: a reference's code is the code the task ships."""
    if skill.origin != "reference":
        return skill
    return replace(skill, code_hash=runtime_env.code_hash(env) if env else "")


def _resources(spec: cmds.TaskSpec, p: Plan) -> ResourceRequest:
    """What the task asked for; left out, what its skills declare (the most any of them
    declares, per resource) over the defaults."""
    declared = [s.resources for s in p.skills if s.resources]
    if spec.resources_given or not declared:
        return spec.resources

    def most(key: str, default: float) -> float:
        values = [float(d[key]) for d in declared if key in d]
        return max(values) if values else default

    r = spec.resources
    return ResourceRequest(cpu=most("cpu", r.cpu), gpu=most("gpu", r.gpu),
                           memory_mb=int(most("memory_mb", r.memory_mb)))  # fmt: skip


def _environment(spec: cmds.TaskSpec, p: Plan) -> dict[str, Any]:
    """The code a task runs in: its own runtime_env, or its registered skill's."""
    registered = {runtime_env.code_hash(dict(s.runtime_env or {})): dict(s.runtime_env or {})
                  for s in p.skills if s.origin == "registered"}  # fmt: skip
    if not registered:
        return spec.runtime_env
    if spec.runtime_env or len(registered) > 1:
        raise InvalidRequest("a task of registered skills runs in their runtime_env: it ships "
                             "none of its own, and its skills share one")  # fmt: skip
    return next(iter(registered.values()))


def _check_code(spec: cmds.TaskSpec, p: Plan, cmd: cmds.SubmitTasks, ctx: Context) -> None:
    """Code a task ships itself (a runtime_env, a reference): the caller may
    (``skills:write``), and its packages were uploaded. Registered skills need neither."""
    if not (spec.runtime_env or any(s.origin == "reference" for s in p.skills)):
        return
    if Scope.SKILLS_WRITE not in granted(cmd.principal):
        raise PermissionDenied("tasks that ship code (a runtime_env, or a skill reference) "
                               "need the skills:write scope")  # fmt: skip
    skills.check_packages(spec.runtime_env, ctx.packages)


async def _plans(cmd: cmds.SubmitTasks, ctx: Context) -> list[Plan]:
    """Each definition checked and split; a skill not installed is looked up among the
    registered ones the submitter may use."""
    catalog = ctx.skills
    try:
        return [plan(s.task_type, s.params, catalog, s.strategy) for s in cmd.specs]
    except UnknownSkill:
        catalog = catalog.merged(await skills.visible(ctx.store, cmd.principal))
    return [plan(s.task_type, s.params, catalog, s.strategy) for s in cmd.specs]


async def load_task(store: EventStore, task_id: str) -> Task:
    records = await store.read_stream(streams.task(task_id))
    if not records:
        raise NotFound(f"task {task_id} not found")
    return Task.from_events([r.event for r in records], version=records[-1].version)


async def submit_tasks(cmd: cmds.SubmitTasks, ctx: Context) -> list[Submission]:
    """Check every definition (type, parameters, skills, the code it ships, and that some
    registered agent has each capability a pooled task needs), then append all tasks in one
    transaction."""
    plans = await _plans(cmd, ctx)
    for spec, p in zip(cmd.specs, plans, strict=True):
        _check_code(spec, p, cmd, ctx)
    wanted = frozenset().union(*(p.capabilities for p in plans))
    if LLM in wanted and Scope.INFERENCE not in granted(cmd.principal):
        # Agents call models as the task's owner: no more than the owner may do directly.
        raise PermissionDenied("tasks that call a model need the inference scope")
    # Pooled agents run installed code; a task that ships code gets agents of its own.
    pooled = [p for s, p in zip(cmd.specs, plans, strict=True)
              if not (s.runtime_env or p.ships_code)]  # fmt: skip
    await agents.check_capabilities(ctx.store, frozenset().union(*(p.capabilities for p in pooled)))
    tasks = [_new_task(spec, p, cmd, ctx)
             for spec, p in zip(cmd.specs, plans, strict=True)]  # fmt: skip
    keys = [s.idempotency_key for s in cmd.specs if s.idempotency_key is not None]
    if len(keys) != len(set(keys)):
        raise InvalidRequest("idempotency keys must be unique within one batch")
    mine = {t.task_id: t for t in tasks}
    replayed: dict[str, Task] = {}

    async def replay(exc: ConcurrencyError) -> None:
        # Only a stream named by an idempotency key can exist already: a replay.
        existing = await load_task(ctx.store, streams.task_id_of(exc.stream_id))
        if existing.request_hash != mine[existing.task_id].request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used for a different request"
            ) from exc
        replayed[existing.task_id] = existing

    writer = Writer.of(cmd, ctx)
    writes = {streams.task(t.task_id): _write(t, writer) for t in tasks}
    await append_leaving_out_conflicts(ctx.store, writes, replay)
    return [Submission(replayed.get(t.task_id, t), t.task_id not in replayed) for t in tasks]


async def cancel_task(cmd: cmds.CancelTask, ctx: Context) -> Task:
    task_id = parse_task_id(cmd.task_id)
    writer = Writer.of(cmd, ctx)

    async def decide() -> tuple[Task, list[StreamWrite]]:
        task = await load_task(ctx.store, task_id)
        if not can_see_task(cmd.principal, task.tenant_id, task.user_id):
            raise NotFound(f"task {task_id} not found")
        task.cancel(ctx.clock(), cmd.reason, cancelled_by=cmd.principal.user_id)
        return task, [_write(task, writer)]

    return await decide_and_append(ctx.store, decide)


Handler = Callable[[Any, Context], Awaitable[Any]]

HANDLERS: dict[type[cmds.Command], Handler] = {
    cmds.SubmitTasks: submit_tasks,
    cmds.CancelTask: cancel_task,
    cmds.DeployModel: models.deploy_model,
    cmds.UndeployModel: models.undeploy_model,
    cmds.SetModelFaults: models.set_model_faults,
    cmds.StartRollout: rollouts.start_rollout,
    cmds.PromoteRollout: rollouts.promote_rollout,
    cmds.AbortRollout: rollouts.abort_rollout,
    cmds.RegisterSkill: skills.register_skill,
    cmds.RetireSkill: skills.retire_skill,
}
