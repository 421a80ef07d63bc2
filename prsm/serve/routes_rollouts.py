"""``/v1/rollouts``: canary rollouts of model versions — start, list, status, promote, abort."""

from __future__ import annotations

from fastapi import APIRouter, Query

from prsm.api.errors import error_responses
from prsm.api.rollouts import RolloutCreate, RolloutList, RolloutOut
from prsm.domain import commands as cmds
from prsm.domain.rollout_policy import RolloutPolicy, RolloutStatus, VersionStats
from prsm.domain.rollouts import Rollout
from prsm.observability import metrics
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, GatewayDeps, RolloutsReader, RolloutsWriter
from prsm.service_layer.models import load_registry
from prsm.service_layer.rollouts import window_stats

ERRORS = error_responses(401, 403, 404, 409, 422, 503)
router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"], responses=ERRORS)


async def _with_window(rollout: Rollout, deps: GatewayDeps) -> RolloutOut:
    window: dict[str, VersionStats] = {}
    if rollout.in_progress and deps.version_stats is not None:
        current, candidate = await window_stats(rollout, deps.version_stats)
        window = {rollout.current_version: current, rollout.new_version: candidate}
    return RolloutOut.of(rollout, window)


@router.post(
    "",
    status_code=202,
    response_model=RolloutOut,
    summary="Start a canary rollout",
    description="Deploys `version` beside the model's current version (unless it is already "
    "deployed) and sends it `initial_percent` of the traffic once it is ready. Every "
    "evaluation interval the controller compares the two versions over the step's window: "
    "healthy → the share grows by `step_factor` up to 100 % and the old version is retired; "
    "criteria failed → traffic goes back and the new version is removed; too few requests → "
    "the step holds, and after `max_empty_intervals` the rollout follows `on_no_data`.",
)
async def start(body: RolloutCreate, principal: RolloutsWriter, deps: Deps) -> RolloutOut:
    command = cmds.StartRollout(
        correlation_id=correlation_id.get(),
        principal=principal,
        model=body.model,
        version=body.version,
        policy=RolloutPolicy(**body.policy.model_dump()),
        current_version=body.current_version,
        source=body.source,
    )
    rollout: Rollout = await deps.bus.handle(command)
    deps.models_changed()
    return RolloutOut.of(rollout)


@router.get("", response_model=RolloutList, summary="Rollouts of your tenant, newest first")
async def list_rollouts(
    principal: RolloutsReader,
    deps: Deps,
    model: str | None = Query(default=None, max_length=64),
    status: RolloutStatus | None = None,
) -> RolloutList:
    registry = await load_registry(deps.store)
    found = [
        r
        for r in registry.rollouts_of(principal)
        if (model is None or r.model == model) and (status is None or r.status is status)
    ]
    found.sort(key=lambda r: r.started_at, reverse=True)
    return RolloutList(rollouts=[RolloutOut.of(r) for r in found])


@router.get("/{rollout_id}", response_model=RolloutOut, summary="One rollout, with live figures")
async def get_rollout(rollout_id: str, principal: RolloutsReader, deps: Deps) -> RolloutOut:
    registry = await load_registry(deps.store)
    return await _with_window(registry.find_rollout(principal, rollout_id), deps)


async def _decide(
    command: cmds.PromoteRollout | cmds.AbortRollout, deps: GatewayDeps
) -> RolloutOut:
    rollout: Rollout = await deps.bus.handle(command)
    metrics.rollout_decided(rollout, "user")
    deps.models_changed()
    return RolloutOut.of(rollout)


@router.post(
    "/{rollout_id}/promote",
    response_model=RolloutOut,
    summary="Send all traffic to the new version now and retire the old one",
)
async def promote(rollout_id: str, principal: RolloutsWriter, deps: Deps) -> RolloutOut:
    cid = correlation_id.get()
    return await _decide(cmds.PromoteRollout(correlation_id=cid, principal=principal,
                                             rollout_id=rollout_id), deps)  # fmt: skip


@router.post(
    "/{rollout_id}/abort",
    response_model=RolloutOut,
    summary="Send all traffic back to the current version and remove the new one",
)
async def abort(rollout_id: str, principal: RolloutsWriter, deps: Deps) -> RolloutOut:
    cid = correlation_id.get()
    return await _decide(cmds.AbortRollout(correlation_id=cid, principal=principal,
                                           rollout_id=rollout_id), deps)  # fmt: skip
