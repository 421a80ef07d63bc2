"""Model registry use cases: deploy and undeploy (users), and the status changes the model
controller observes. Each reads the registry stream, decides in the domain and appends with
optimistic concurrency, deciding again when another writer got there first."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from prsm.domain import commands as cmds
from prsm.domain import registry_events as rev
from prsm.domain import streams
from prsm.domain.model_registry import Deployment, ModelRegistry, deployment_key
from prsm.domain.registry_state import crossed, restored, state_of
from prsm.service_layer.ports import Clock, EventStore, StreamWrite
from prsm.service_layer.unit_of_work import Context, Writer, decide_and_append

log = logging.getLogger("prsm.models")


async def load_registry(store: EventStore) -> ModelRegistry:
    """The registry from its latest snapshot and the events after it (or the whole stream,
    while it has none)."""
    snapshot = await store.load_snapshot(streams.MODEL_REGISTRY)
    registry = ModelRegistry() if snapshot is None else restored(snapshot)
    records = await store.read_stream(streams.MODEL_REGISTRY, after=registry.version)
    version = records[-1].version if records else registry.version
    return registry.replay((r.event for r in records), version)


async def change_registry(
    writer: Writer, decide: Callable[[ModelRegistry], object]
) -> ModelRegistry:
    """Load the registry, let ``decide`` change it, append what it recorded."""

    async def attempt() -> tuple[ModelRegistry, list[StreamWrite]]:
        registry = await load_registry(writer.store)
        decide(registry)
        if not registry.changes:
            return registry, []
        events = writer.events(registry.changes)
        return registry, [StreamWrite(streams.MODEL_REGISTRY, registry.version, events)]

    registry = await decide_and_append(writer.store, attempt)
    if registry.changes:
        await _snapshot_if_due(writer.store, registry, len(registry.changes))
    return registry


async def _snapshot_if_due(store: EventStore, registry: ModelRegistry, appended: int) -> None:
    """Every ``SNAPSHOT_EVERY`` events the writer that crossed the mark saves the registry as
    it left it; one that fails to is only logged (the next mark saves one)."""
    before, after = registry.version, registry.version + appended
    if not crossed(before, after):
        return
    try:
        await store.save_snapshot(streams.MODEL_REGISTRY, state_of(registry, after))
    except Exception:
        log.warning("could not save a snapshot of the model registry", exc_info=True)


async def deploy_model(cmd: cmds.DeployModel, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        Writer.of(cmd, ctx), lambda r: r.deploy(cmd.principal, cmd.spec, at, cmd.shared)
    )
    last = registry.changes[-1]
    assert isinstance(last, rev.ModelDeployRequested)
    return registry.deployments[deployment_key(last.tenant_id, last.name, last.version)]


async def undeploy_model(cmd: cmds.UndeployModel, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        Writer.of(cmd, ctx), lambda r: r.undeploy(cmd.principal, cmd.name, cmd.version, at)
    )
    return registry.find(cmd.principal, cmd.name, cmd.version)


async def set_model_faults(cmd: cmds.SetModelFaults, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        Writer.of(cmd, ctx),
        lambda r: r.set_faults(cmd.principal, cmd.name, cmd.version, cmd.faults, at),
    )
    return registry.find(cmd.principal, cmd.name, cmd.version)


def controller_writer(store: EventStore, clock: Clock) -> Writer:
    return Writer(store, clock, "model-controller", correlation_id=str(uuid.uuid4()))
