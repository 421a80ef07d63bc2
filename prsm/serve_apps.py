"""Application builders for Serve config files (``serve run`` / ``serve deploy``, KubeRay
``RayService``): ``import_path: prsm.serve_apps:platform``.

``args`` holds ``settings`` (PRSM settings as plain data; ``PRSM_*`` variables of the runtime
env apply too) and ``models`` (deployments, the fields of ``POST /v1/deployments``). The
builder registers the models as shared deployments (once; a restart finds them registered),
starts the model controller that deploys them on Serve, and returns the gateway application.
``source: "prsm:tiny"`` names the built-in plumbing test model, built on first use.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from prsm import bootstrap
from prsm.adapters.inference import tiny_model
from prsm.api.models import DeploymentCreate
from prsm.config import Settings
from prsm.domain.models import ModelSpec, validated

TINY_SOURCE = "prsm:tiny"


def plan(args: dict[str, Any]) -> tuple[Settings, list[ModelSpec]]:
    """The settings and validated model specs a config's ``args`` describe (no side effects)."""
    settings = Settings(**args.get("settings", {}))
    specs = []
    for raw in args.get("models", []):
        fields = DeploymentCreate.model_validate(raw).model_dump(exclude={"shared"})
        spec = ModelSpec(**fields)
        if spec.source == TINY_SOURCE:
            spec = dataclasses.replace(spec, source=str(settings.tiny_model_path))
        specs.append(validated(spec))
    return settings, specs


def platform(args: dict[str, Any]) -> Any:
    from prsm.serve.deployment import gateway_app

    settings, specs = plan(args)
    if any(s.source == str(settings.tiny_model_path) for s in specs):
        tiny_model.ensure_tiny_model(settings.tiny_model_path)
    asyncio.run(bootstrap.register_models(settings, specs))
    bootstrap.start_orchestrator(settings)
    bootstrap.start_model_controller(settings)
    return gateway_app(bootstrap.build_gateway, settings.for_replicas(), settings.gateway_replicas)
