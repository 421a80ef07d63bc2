"""Application builders for Serve config files (``serve run`` / ``serve deploy``, KubeRay
``RayService``): ``import_path: prsm.serve_apps:platform``.

``args`` holds ``settings`` (PRSM settings as plain data; ``PRSM_*`` variables of the runtime
env apply too), ``models`` (deployments, the fields of ``POST /v1/deployments``) and
``rollouts`` (canary rollouts of those models, the fields of ``POST /v1/rollouts``). The
builder registers the models as shared deployments and declares the rollouts (each once; a
restart finds them recorded), starts the model controller that deploys the models on Serve
and starts each rollout once its model serves, and returns the gateway application.
``source: "prsm:tiny"`` names the built-in plumbing test model, built on first use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from prsm import bootstrap
from prsm.adapters.inference import tiny_model
from prsm.api.deployments import DEPLOYMENT_CREATE, spec_fields
from prsm.api.rollouts import RolloutCreate
from prsm.config import Settings
from prsm.domain import registry_events as rev
from prsm.domain.errors import InvalidRequest
from prsm.domain.models import SHARED_TENANT, ModelSpec, validated
from prsm.domain.rollout_policy import RolloutPolicy
from prsm.service_layer.rollouts import declare_rollouts, new_rollout_id
from prsm.service_layer.unit_of_work import Writer

TINY_SOURCE = "prsm:tiny"


def plan(args: dict[str, Any]) -> tuple[Settings, list[ModelSpec]]:
    """The settings and validated model specs a config's ``args`` describe (no side effects)."""
    settings = Settings(**args.get("settings", {}))
    specs = []
    for raw in args.get("models", []):
        spec = ModelSpec(**spec_fields(DEPLOYMENT_CREATE.validate_python(raw)))
        if spec.source == TINY_SOURCE:
            spec = dataclasses.replace(spec, source=str(settings.tiny_model_path))
        specs.append(validated(spec))
    return settings, specs


def planned_rollouts(args: dict[str, Any], settings: Settings) -> list[rev.RolloutDeclared]:
    """The rollouts a config's ``args`` declare, of shared models (no side effects)."""
    out = []
    for raw in args.get("rollouts", []):
        body = RolloutCreate.model_validate(raw)
        if body.version == body.current_version:
            raise InvalidRequest(f"rollout of {body.model}: the new version must differ")
        source = str(settings.tiny_model_path) if body.source == TINY_SOURCE else body.source
        # The names as a deployment's (the spec itself is the current version's, at start).
        validated(ModelSpec(name=body.model, version=body.version, source=source or "-"))
        out.append(rev.RolloutDeclared(
            rollout_id=new_rollout_id(), tenant_id=SHARED_TENANT, model=body.model,
            at=bootstrap.utc_now(), new_version=body.version,
            current_version=body.current_version, source=source,
            policy=RolloutPolicy(**body.policy.model_dump()).validated(), declared_by="prsm",
        ))  # fmt: skip
    return out


async def _declare(settings: Settings, declared: list[rev.RolloutDeclared]) -> list[str]:
    store = await bootstrap.open_store(settings)
    try:
        writer = Writer(store, bootstrap.utc_now, "serve-config", correlation_id=str(uuid.uuid4()))
        return await declare_rollouts(writer, declared)
    finally:
        await store.close()


def platform(args: dict[str, Any]) -> Any:
    from prsm.serve.deployment import gateway_app

    settings, specs = plan(args)
    declared = planned_rollouts(args, settings)
    if any(s.source == str(settings.tiny_model_path) for s in specs):
        tiny_model.ensure_tiny_model(settings.tiny_model_path)
    asyncio.run(bootstrap.register_models(settings, specs))
    if declared:
        asyncio.run(_declare(settings, declared))
    bootstrap.start_orchestrator(settings)
    bootstrap.start_model_controller(settings)
    return gateway_app(bootstrap.build_gateway, settings.for_replicas(), settings.gateway_replicas)
