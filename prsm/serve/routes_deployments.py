"""``/v1/deployments``: deploy, list, inspect and undeploy model versions."""

from __future__ import annotations

from fastapi import APIRouter, Query

from prsm.api.deployments import DeploymentCreate, spec_fields
from prsm.api.errors import error_responses
from prsm.api.models import DeploymentList, DeploymentOut, FaultsBody, TrafficOut
from prsm.domain import commands as cmds
from prsm.domain.errors import RuntimeUnavailable
from prsm.domain.model_registry import Deployment
from prsm.domain.models import SHARED_TENANT, Faults, ModelSpec
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, ModelsReader, ModelsWriter
from prsm.service_layer.models import load_registry

ERRORS = error_responses(401, 403, 404, 409, 422, 503)
router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=ERRORS)


@router.post(
    "",
    status_code=202,
    response_model=DeploymentOut,
    summary="Deploy a model version",
    description="Accepted at once with status DEPLOYING; the model controller deploys it on "
    "Ray Serve and the status becomes READY (or FAILED, with the reason in `detail`).",
)
async def deploy(body: DeploymentCreate, principal: ModelsWriter, deps: Deps) -> DeploymentOut:
    command = cmds.DeployModel(
        correlation_id=correlation_id.get(),
        principal=principal,
        spec=ModelSpec(**spec_fields(body)),
        shared=body.shared,
    )
    deployment: Deployment = await deps.bus.handle(command)
    deps.models_changed()
    return DeploymentOut.of(deployment)


@router.get(
    "",
    response_model=DeploymentList,
    summary="Model versions you can call",
    description="Your tenant's live versions and the shared (platform) ones, marked "
    "`shared: true`: the models `GET /v1/models` lists once ready. Only admins undeploy "
    "shared ones or change their faults and rollouts (403 for others).",
)
async def list_deployments(principal: ModelsReader, deps: Deps) -> DeploymentList:
    registry = await load_registry(deps.store)
    found = sorted(registry.visible(principal), key=lambda d: (d.spec.name, d.created_at))
    return DeploymentList(deployments=[DeploymentOut.of(d) for d in found])


@router.get(
    "/{name}/{version}",
    response_model=DeploymentOut,
    summary="One model version",
    description="Your tenant's version of that name, else the shared one (`shared: true`).",
)
async def get_deployment(
    name: str, version: str, principal: ModelsReader, deps: Deps
) -> DeploymentOut:
    registry = await load_registry(deps.store)
    return DeploymentOut.of(registry.find(principal, name, version))


@router.get(
    "/{name}/{version}/traffic",
    response_model=TrafficOut,
    summary="A version's recent traffic: request rate, errors, time to first token, tokens/s",
    description="Over the last `window_s` seconds, from every gateway replica (each sends "
    "its requests' figures within a second). A shared model's figures are your tenant's "
    "calls (admins: everyone's).",
)
async def traffic(
    name: str,
    version: str,
    principal: ModelsReader,
    deps: Deps,
    window_s: float = Query(default=60.0, ge=1.0, le=7200.0),
) -> TrafficOut:
    registry = await load_registry(deps.store)
    d = registry.find(principal, name, version)
    if deps.traffic is None:
        raise RuntimeUnavailable("this gateway does not run on Ray: no traffic figures")
    everyone = d.tenant_id != SHARED_TENANT or principal.is_admin
    caller = None if everyone else principal.tenant_id
    figures = await deps.traffic(d.tenant_id, d.spec.name, d.spec.version, window_s, caller)
    return TrafficOut.of(figures)


@router.put(
    "/{name}/{version}/faults",
    response_model=DeploymentOut,
    summary="Inject faults into a version's traffic (drills)",
    description="Every gateway replica applies them within a second: each request to this "
    "version waits `latency_ms` more and fails (503 `injected_fault`) with probability "
    "`error_rate`. Zeros remove them.",
)
async def set_faults(
    name: str, version: str, body: FaultsBody, principal: ModelsWriter, deps: Deps
) -> DeploymentOut:
    command = cmds.SetModelFaults(
        correlation_id=correlation_id.get(),
        principal=principal,
        name=name,
        version=version,
        faults=Faults(body.error_rate, body.latency_ms),
    )
    return DeploymentOut.of(await deps.bus.handle(command))


@router.delete(
    "/{name}/{version}",
    status_code=202,
    response_model=DeploymentOut,
    summary="Undeploy a model version",
    description="Accepted with status UNDEPLOYING; the controller removes the Serve "
    "deployment, which frees its resources, and the status becomes UNDEPLOYED.",
)
async def undeploy(name: str, version: str, principal: ModelsWriter, deps: Deps) -> DeploymentOut:
    command = cmds.UndeployModel(
        correlation_id=correlation_id.get(), principal=principal, name=name, version=version
    )
    deployment: Deployment = await deps.bus.handle(command)
    deps.models_changed()
    return DeploymentOut.of(deployment)
