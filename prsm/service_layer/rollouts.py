"""Canary rollout use cases: start, promote and abort (users), and the scheduled evaluation
(the rollout controller). Rollouts live in the model registry's stream, so each decision and
the deploy or undeploy it implies are one append."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from prsm.domain import commands as cmds
from prsm.domain import registry_events as rev
from prsm.domain.errors import NotFound, PrsmError
from prsm.domain.identity import Principal
from prsm.domain.model_registry import ModelRegistry, deployment_key
from prsm.domain.models import SHARED_TENANT, ModelStatus
from prsm.domain.rollout_policy import VersionStats
from prsm.domain.rollouts import Rollout
from prsm.service_layer.models import change_registry, load_registry
from prsm.service_layer.unit_of_work import Context, Writer

log = logging.getLogger("prsm.models")

# (tenant, model, version, since) → that version's figures from ``since`` until now
StatsSource = Callable[[str, str, str, datetime], Awaitable[VersionStats]]


def new_rollout_id() -> str:
    return f"ro-{uuid.uuid4().hex[:12]}"


async def start_rollout(cmd: cmds.StartRollout, ctx: Context) -> Rollout:
    at, rollout_id = ctx.clock(), new_rollout_id()

    def decide(r: ModelRegistry) -> None:
        r.start_rollout(
            cmd.principal, rollout_id, cmd.model, cmd.version, cmd.policy, at,
            current_version=cmd.current_version, source=cmd.source,
        )  # fmt: skip

    registry = await change_registry(Writer.of(cmd, ctx), decide)
    return registry.rollouts[rollout_id]


async def promote_rollout(cmd: cmds.PromoteRollout, ctx: Context) -> Rollout:
    at = ctx.clock()
    registry = await change_registry(
        Writer.of(cmd, ctx), lambda r: r.promote_rollout(cmd.principal, cmd.rollout_id, at)
    )
    return registry.rollouts[cmd.rollout_id]


async def abort_rollout(cmd: cmds.AbortRollout, ctx: Context) -> Rollout:
    at = ctx.clock()
    registry = await change_registry(
        Writer.of(cmd, ctx), lambda r: r.abort_rollout(cmd.principal, cmd.rollout_id, at)
    )
    return registry.rollouts[cmd.rollout_id]


async def window_stats(rollout: Rollout, stats: StatsSource) -> tuple[VersionStats, VersionStats]:
    """Both versions' figures over the rollout's current window (since its step started)."""
    since = rollout.step_started_at
    current = await stats(rollout.tenant_id, rollout.model, rollout.current_version, since)
    candidate = await stats(rollout.tenant_id, rollout.model, rollout.new_version, since)
    return current, candidate


async def evaluate_due(writer: Writer, stats: StatsSource) -> list[Rollout]:
    """Decide every rollout whose evaluation is due; returns the rollouts decided."""
    now = writer.clock()
    registry = await load_registry(writer.store)
    due = [r for r in registry.rollouts.values() if r.due(now)]
    figures = {r.rollout_id: await window_stats(r, stats) for r in due}
    if not figures:
        return []

    decided: list[str] = []

    def decide(r: ModelRegistry) -> None:
        decided.clear()  # tried again after a conflict: decided on the registry as it is now
        for rollout_id, (current, candidate) in figures.items():
            if r.rollouts[rollout_id].due(now):  # not decided meanwhile (promoted, aborted)
                r.evaluate_rollout(rollout_id, now, current, candidate)
                decided.append(rollout_id)

    registry = await change_registry(writer, decide)
    return [registry.rollouts[rollout_id] for rollout_id in decided]


async def declare_rollouts(writer: Writer, declared: list[rev.RolloutDeclared]) -> list[str]:
    """Record rollouts to start later (a Serve config's), once each: one already declared or
    started for the same model and new version is left alone. Returns the ids recorded."""

    def decide(r: ModelRegistry) -> None:
        for d in declared:
            key = (d.tenant_id, d.model, d.new_version)
            known = {(x.tenant_id, x.model, x.new_version) for x in r.declared.values()}
            known |= {(x.tenant_id, x.model, x.new_version) for x in r.rollouts.values()}
            if key not in known:
                r.declare_rollout(_admin(d.declared_by), d)

    registry = await change_registry(writer, decide)
    return [e.rollout_id for e in registry.changes if isinstance(e, rev.RolloutDeclared)]


async def start_declared(writer: Writer) -> list[Rollout]:
    """Start the declared rollouts whose model now serves a ready version (and has no other
    rollout in progress); the others wait for a later pass."""
    registry = await load_registry(writer.store)
    if not any(_startable(registry, d) for d in registry.declared.values()):
        return []
    at, started = writer.clock(), list[str]()

    def decide(r: ModelRegistry) -> None:
        started.clear()
        for d in list(r.declared.values()):
            if not _startable(r, d):
                continue
            try:
                r.start_rollout(
                    _admin(d.declared_by), d.rollout_id, d.model, d.new_version, d.policy, at,
                    current_version=d.current_version, source=d.source,
                )  # fmt: skip
            except PrsmError as e:  # refused (it records nothing): the others still start
                log.warning("declared rollout %s of %s cannot start: %s", d.rollout_id, d.model, e)
                continue
            started.append(d.rollout_id)

    registry = await change_registry(writer, decide)
    return [registry.rollouts[rollout_id] for rollout_id in started]


def _admin(user_id: str) -> Principal:
    return Principal(user_id=user_id, tenant_id=SHARED_TENANT, roles=frozenset({"admin"}))


def _startable(r: ModelRegistry, d: rev.RolloutDeclared) -> bool:
    try:
        route = r.route(_admin(d.declared_by), d.model)
    except NotFound:  # nothing of it is ready yet
        return False
    current = d.current_version or route.weights[0][0]
    found = r.deployments.get(deployment_key(d.tenant_id, d.model, current))
    return (route.rollout_id is None and current != d.new_version and found is not None
            and found.status is ModelStatus.READY)  # fmt: skip
