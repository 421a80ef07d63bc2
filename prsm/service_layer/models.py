"""Model registry use cases: deploy and undeploy (users), and the status changes the model
controller observes. Each reads the registry stream, decides in the domain and appends with
optimistic concurrency, deciding again when another writer got there first."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import registry_events as rev
from prsm.domain.errors import ConcurrencyError
from prsm.domain.model_registry import STREAM, Deployment, ModelRegistry, deployment_key
from prsm.service_layer.ports import Clock, EventStore, StreamWrite

if TYPE_CHECKING:
    from prsm.service_layer.handlers import Context

MAX_CONFLICT_RETRIES = 20


@dataclass(frozen=True)
class Writer:
    """Who appends to the registry, and under which correlation id."""

    store: EventStore
    clock: Clock
    source: str
    correlation_id: str
    causation_id: str | None = None

    def metadata(self) -> ev.EventMetadata:
        return ev.EventMetadata(
            occurred_at=self.clock(),
            source=self.source,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
        )


async def load_registry(store: EventStore) -> ModelRegistry:
    records = await store.read_stream(STREAM)
    version = records[-1].version if records else 0
    return ModelRegistry.from_events((r.event for r in records), version)


async def change_registry(
    writer: Writer, decide: Callable[[ModelRegistry], object]
) -> ModelRegistry:
    """Load the registry, let ``decide`` change it, append what it recorded."""
    for _ in range(MAX_CONFLICT_RETRIES):
        registry = await load_registry(writer.store)
        decide(registry)
        if not registry.changes:
            return registry
        events = [ev.NewEvent(e, writer.metadata()) for e in registry.changes]
        try:
            await writer.store.append([StreamWrite(STREAM, registry.version, events)])
            return registry
        except ConcurrencyError:
            continue
    raise ConcurrencyError(STREAM, expected=-1, actual=-1)


def _writer(cmd: cmds.Command, ctx: Context) -> Writer:
    return Writer(ctx.store, ctx.clock, ctx.source, cmd.correlation_id, cmd.command_id)


async def deploy_model(cmd: cmds.DeployModel, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        _writer(cmd, ctx), lambda r: r.deploy(cmd.principal, cmd.spec, at, cmd.shared)
    )
    last = registry.changes[-1]
    assert isinstance(last, rev.ModelDeployRequested)
    return registry.deployments[deployment_key(last.tenant_id, last.name, last.version)]


async def undeploy_model(cmd: cmds.UndeployModel, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        _writer(cmd, ctx), lambda r: r.undeploy(cmd.principal, cmd.name, cmd.version, at)
    )
    return registry.find(cmd.principal, cmd.name, cmd.version)


async def set_model_faults(cmd: cmds.SetModelFaults, ctx: Context) -> Deployment:
    at = ctx.clock()
    registry = await change_registry(
        _writer(cmd, ctx),
        lambda r: r.set_faults(cmd.principal, cmd.name, cmd.version, cmd.faults, at),
    )
    return registry.find(cmd.principal, cmd.name, cmd.version)


def controller_writer(store: EventStore, clock: Clock) -> Writer:
    return Writer(store, clock, "model-controller", correlation_id=str(uuid.uuid4()))
