"""Model registry use cases: deploy and undeploy (users), and the status changes the model
controller observes. Each reads the registry stream, decides in the domain and appends with
optimistic concurrency, deciding again when another writer got there first."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from prsm.domain import commands as cmds
from prsm.domain import registry_events as rev
from prsm.domain import streams
from prsm.domain.model_registry import Deployment, ModelRegistry, deployment_key
from prsm.service_layer.ports import Clock, EventStore, StreamWrite
from prsm.service_layer.unit_of_work import Context, Writer, decide_and_append


async def load_registry(store: EventStore) -> ModelRegistry:
    records = await store.read_stream(streams.MODEL_REGISTRY)
    version = records[-1].version if records else 0
    return ModelRegistry.from_events((r.event for r in records), version)


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

    return await decide_and_append(writer.store, attempt)


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
