"""The model controller: a named, detached Ray actor that makes Ray Serve match the model
registry. It holds no state of its own: every pass reads the registry from the event store
and Serve's status, deploys what is requested, removes what is undeployed, and records what
it observes (deployed, failed, health). It is also the rollout controller: each pass decides
the canary rollouts whose evaluation is due, on the figures of the rollout stats actor.
Killed, it restarts and carries on from the store, at the same step with the same weights.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import ray
from ray import serve

from prsm.adapters.inference.vllm_serve import APP_PREFIX, VllmServeBackend, app_name, build_app
from prsm.adapters.ray_compat import delete_app_nowait, deploy_app_nowait
from prsm.domain.model_registry import Deployment, ModelRegistry
from prsm.domain.models import ModelStatus
from prsm.observability import metrics
from prsm.runtime import actors, rollout_stats
from prsm.runtime.loop_actor import LoopActor, StoreBuilder
from prsm.service_layer.models import change_registry, controller_writer, load_registry
from prsm.service_layer.rollouts import evaluate_due, start_declared

log = logging.getLogger("prsm.models")

NAME = "prsm-model-controller"
NAMESPACE = actors.NAMESPACE
# An undeployed version keeps serving this long, so that no gateway replica (each routes by a
# registry copy at most 2 s old, see ModelCatalog) sends a request to an application that is
# going away.
DRAIN = timedelta(seconds=3)
INTERVAL_S = 2.0  # between passes (a change of the registry wakes the controller at once)
# Between passes while a version is on its way up or down: a version whose engine has just
# started is marked ready (and serves) within this, not within INTERVAL_S.
CHANGING_INTERVAL_S = 0.5


def _now() -> datetime:
    return datetime.now(UTC)


def serve_app(d: Deployment) -> str:
    return app_name(d.tenant_id, d.spec.name, d.spec.version)


class ModelController(LoopActor):
    name = "model-reconcile"

    def __init__(self, build_store: StoreBuilder, settings: dict[str, Any],
                 grant_key: bytes | None = None) -> None:  # fmt: skip
        """``grant_key``: of the gateway's grants; the versions deployed answer HTTP
        themselves for the requests it grants (None: only through Serve handles)."""
        super().__init__(build_store, settings, INTERVAL_S)
        self._grant_key = grant_key
        self._start()

    async def reconcile(self) -> dict[str, str]:
        """One pass; returns each deployment's status afterwards."""
        assert self._store is not None, "the loop opens the store before its first pass"
        registry = await load_registry(self._store)
        apps = await asyncio.to_thread(_serve_apps)
        observed: list[Callable[[ModelRegistry], None]] = []
        for d in registry.deployments.values():
            observed.extend(await self._reconcile_one(d, apps))
        for name in set(apps) - {serve_app(d) for d in registry.deployments.values()}:
            await asyncio.to_thread(delete_app_nowait, name)  # left over
        if observed:

            def apply(r: ModelRegistry) -> None:
                for change in observed:
                    change(r)

            registry = await change_registry(controller_writer(self._store, _now), apply)
        changing = any(
            d.status in (ModelStatus.DEPLOYING, ModelStatus.UNDEPLOYING)
            for d in registry.deployments.values()
        )
        self._interval_s = CHANGING_INTERVAL_S if changing else INTERVAL_S
        return {key: d.status.value for key, d in registry.deployments.items()}

    async def evaluate_rollouts(self) -> None:
        """Start the declared rollouts that can start, and decide the rollouts that are due (a
        version one leaves behind is removed by the next passes, once drained)."""
        assert self._store is not None
        writer = controller_writer(self._store, _now)
        decided = await evaluate_due(writer, rollout_stats.version_stats)
        for r in decided:
            metrics.rollout_decided(r, "controller")
            log.info("rollout %s of %s: %s at %.1f %%", r.rollout_id, r.model,
                     type(r.history[-1]).__name__, r.percent)  # fmt: skip
        for r in await start_declared(writer):
            log.info("rollout %s of %s to %s started, as declared", r.rollout_id, r.model,
                     r.new_version)  # fmt: skip

    async def _pass(self) -> None:
        await self.reconcile()
        await self.evaluate_rollouts()

    async def _reconcile_one(
        self, d: Deployment, apps: dict[str, tuple[str, str]]
    ) -> list[Callable[[ModelRegistry], None]]:
        key, name, at = d.key, serve_app(d), _now()
        if d.spec.is_provider:
            return provider_changes(d, at)
        status, message = apps.get(name, ("", ""))
        if d.status in (ModelStatus.FAILED, ModelStatus.UNDEPLOYED, ModelStatus.UNDEPLOYING):
            draining = d.status is ModelStatus.UNDEPLOYING and at - d.updated_at < DRAIN
            if status and status != "DELETING" and not draining:
                await asyncio.to_thread(delete_app_nowait, name)
            if d.status is ModelStatus.UNDEPLOYING and not status:
                return [lambda r: r.undeployed(key, at)]
            return []
        if status == "DELETING":  # an earlier version of it is still going: deploy after
            return []
        if not status:
            log_level = str(self._settings.get("log_level", "INFO"))
            await asyncio.to_thread(_deploy, d, name, log_level, self._grant_key)
            if d.status is ModelStatus.READY:  # e.g. the platform restarted
                return [lambda r: r.health(key, at, False, "redeploying")]
            return []
        if status == "RUNNING":
            if d.status is ModelStatus.DEPLOYING:
                await _warm_up(d, name)
            return [lambda r: r.deployed(key, at), lambda r: r.health(key, at, True, "serving")]
        if status == "DEPLOY_FAILED":
            if d.status is ModelStatus.DEPLOYING:
                await asyncio.to_thread(delete_app_nowait, name)
                return [lambda r: r.failed(key, at, message or "deployment failed")]
            return [lambda r: r.health(key, at, False, message or "deployment failed")]
        if status == "UNHEALTHY":
            return [lambda r: r.health(key, at, False, message or "unhealthy")]
        return []  # DEPLOYING / NOT_STARTED: wait


def provider_changes(d: Deployment, at: datetime) -> list[Callable[[ModelRegistry], None]]:
    key = d.key
    if d.status is ModelStatus.UNDEPLOYING:
        return [lambda r: r.undeployed(key, at)]
    if d.status is not ModelStatus.DEPLOYING:
        return []
    if os.environ.get(d.spec.api_key_env):
        return [lambda r: r.deployed(key, at)]
    error = f"{d.spec.api_key_env} is not set in the platform's environment"
    return [lambda r: r.failed(key, at, error)]


def _serve_apps() -> dict[str, tuple[str, str]]:
    """PRSM's model applications on Serve: name → (status, message)."""
    status = serve.status()
    return {
        name: (str(app.status.value if hasattr(app.status, "value") else app.status), app.message)
        for name, app in status.applications.items()
        if name.startswith(APP_PREFIX)
    }


WARM_UP_REQUESTS = 3


async def _warm_up(d: Deployment, name: str) -> None:
    """A few one-token requests before the version is READY: the first forward passes of a
    fresh engine are slow, and its first users (or a canary's first window) should not pay
    for them. A failed warm-up is logged; Serve already reports the app running."""
    backend = VllmServeBackend(name, timeout_s=60.0)
    body = {"model": d.spec.name, "messages": [{"role": "user", "content": "warm up"}],
            "max_tokens": 1}  # fmt: skip

    async def requests() -> None:
        for _ in range(WARM_UP_REQUESTS):
            await backend.chat(dict(body))

    try:
        await asyncio.wait_for(requests(), timeout=60.0)
    except Exception:
        log.warning("warm-up of %s failed; marking it ready anyway", d.model_id, exc_info=True)


def _deploy(d: Deployment, name: str, log_level: str, grant_key: bytes | None) -> None:
    log.info("deploying %s as Serve application %s", d.model_id, name)
    direct = None
    if grant_key is not None:
        from prsm.adapters.inference.llm_server import DirectOptions

        direct = DirectOptions(name, grant_key, rollout_stats.StatsRecorder().record)
    deploy_app_nowait(build_app(d.spec, d.spec.name, log_level, direct), name=name,
                      route_prefix=None)  # fmt: skip


def start(build_store: StoreBuilder, settings: dict[str, Any],
          grant_key: bytes | None = None) -> Any:  # fmt: skip
    """Get or create the controller actor and start its loop; returns its handle."""
    handle = actors.singleton(ModelController, NAME, build_store, settings, grant_key)
    ray.get(handle.ready.remote())
    return handle


def wake() -> None:
    """Ask the controller, if it runs, to reconcile now (fire and forget)."""
    handle = actors.lookup(NAME)
    if handle is not None:
        handle.wake.remote()


def stop() -> None:
    """Kill the controller for good (before Serve shuts down, so it redeploys nothing)."""
    actors.kill(NAME)
