"""The model registry as of one version of its stream: what a snapshot holds, so a reader
loads the snapshot and the events after it instead of the whole stream."""

from __future__ import annotations

from dataclasses import dataclass

from prsm.domain import registry_events as rev
from prsm.domain.model_registry import Deployment, ModelRegistry
from prsm.domain.rollouts import Rollout, RolloutState

SNAPSHOT_EVERY = 100  # events: a writer whose append crosses a multiple of this saves one


@dataclass(frozen=True)
class RegistryState:
    version: int  # of the model-registry stream, the last event it includes
    deployments: tuple[Deployment, ...]
    rollouts: tuple[RolloutState, ...]
    declared: tuple[rev.RolloutDeclared, ...]


def state_of(registry: ModelRegistry, version: int) -> RegistryState:
    """The registry's state, which its stream reached at ``version`` (the registry's own
    version is the one it was loaded at, before the changes it holds were appended)."""
    return RegistryState(
        version=version,
        deployments=tuple(registry.deployments.values()),
        rollouts=tuple(r.state() for r in registry.rollouts.values()),
        declared=tuple(registry.declared.values()),
    )


def restored(state: RegistryState) -> ModelRegistry:
    registry = ModelRegistry()
    registry.deployments = {d.key: d for d in state.deployments}
    registry.rollouts = {r.started.rollout_id: Rollout.restore(r) for r in state.rollouts}
    registry.declared = {d.rollout_id: d for d in state.declared}
    registry.version = state.version
    return registry


def crossed(before: int, after: int) -> bool:
    """Whether an append that took the stream from ``before`` to ``after`` events crossed a
    multiple of ``SNAPSHOT_EVERY`` (a snapshot is due)."""
    return after // SNAPSHOT_EVERY > before // SNAPSHOT_EVERY
