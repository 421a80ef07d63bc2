"""What each gateway replica knows of the model registry: a copy refreshed from the event
store every second, off the request path (at once when a request names a model it does not
know yet), and one backend per deployed model version, made on first use."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from prsm.domain.errors import NotFound
from prsm.domain.identity import Principal
from prsm.domain.model_registry import Deployment, ModelRegistry, Route, deployment_key
from prsm.observability import metrics
from prsm.service_layer.models import load_registry
from prsm.service_layer.ports import EventStore, InferenceBackend

BackendFactory = Callable[[Deployment], InferenceBackend]


class ModelCatalog:
    def __init__(self, store: EventStore, factory: BackendFactory, max_age_s: float = 1.0):
        self._store = store
        self._factory = factory
        self._max_age_s = max_age_s
        self._registry: ModelRegistry | None = None
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[ModelRegistry] | None = None
        self._backends: dict[tuple[str, object], InferenceBackend] = {}

    async def registry(self, max_age_s: float | None = None) -> ModelRegistry:
        """The registry copy: reloaded in the background once older than ``max_age_s`` (the
        request goes on with the copy it has), in line once older than twice that, so that
        no request routes by a copy more than ``2 × max_age_s`` old."""
        limit = self._max_age_s if max_age_s is None else max_age_s
        age = time.monotonic() - self._loaded_at
        if self._registry is None or age > 2 * limit:
            return await self._reload(limit)
        if age > limit and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(self._reload(limit))
            self._refresh.add_done_callback(_consume)  # a failure shows on the in-line load
        return self._registry

    async def _reload(self, limit: float) -> ModelRegistry:
        async with self._lock:  # one load at a time; a waiter may find it done
            if self._registry is None or time.monotonic() - self._loaded_at > limit:
                started = time.monotonic()
                self._registry = await load_registry(self._store)
                self._loaded_at = started
                _export_traffic(self._registry)
            return self._registry

    async def resolve(
        self, principal: Principal, model: str
    ) -> tuple[Deployment, InferenceBackend, Route]:
        """The deployment that serves this request for ``model`` (by its route: during a
        rollout, a weighted or per-user choice between two versions), its backend, and the
        route it was picked from."""
        registry = await self.registry()
        try:
            route = registry.route(principal, model)
        except NotFound:  # perhaps ready since the last refresh
            registry = await self.registry(max_age_s=0.0)
            route = registry.route(principal, model)
        version = route.pick(route.draw(principal.user_id, random.random()))
        deployment = registry.deployments[deployment_key(route.tenant_id, route.model, version)]
        return deployment, self.backend(deployment), route

    def backend(self, d: Deployment) -> InferenceBackend:
        key = (d.key, d.created_at)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = self._factory(d)
        return backend

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
        self._backends.clear()


def _consume(task: asyncio.Task[ModelRegistry]) -> None:
    if not task.cancelled():
        task.exception()


def _export_traffic(registry: ModelRegistry) -> None:
    """The traffic share of each version in a rollout, as the router applies it."""
    for rollout in registry.rollouts.values():
        shares = dict(rollout.weights)
        for version in (rollout.current_version, rollout.new_version):
            metrics.ROLLOUT_TRAFFIC.labels(rollout.model, version).set(
                100 * shares.get(version, 0.0)
            )
