"""The composition root: builds the store, bus and gateway from settings."""

from __future__ import annotations

import functools
import gc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prsm.adapters.blobs import BlobStore
from prsm.adapters.inference import tiny_model
from prsm.adapters.inference.anthropic_provider import AnthropicBackend
from prsm.adapters.inference.grants import grant_key
from prsm.adapters.inference.openai_provider import OpenAIBackend
from prsm.adapters.skill_code import installed
from prsm.adapters.store.postgres import PostgresStore
from prsm.adapters.store.sqlite import SqliteStore
from prsm.config import Settings
from prsm.domain.commands import DeployModel
from prsm.domain.errors import (
    AuthenticationError,
)
from prsm.domain.identity import Principal
from prsm.domain.model_registry import LIVE, Deployment, deployment_key
from prsm.domain.models import SHARED_TENANT, Framework, ModelSpec
from prsm.observability.logging import configure as configure_logging
from prsm.runtime import local_cluster
from prsm.runtime.edge import Edge
from prsm.security.rate_limits import (
    LocalBuckets,
    RateLimiter,
    RedisBuckets,
    parse_limits,
)
from prsm.security.tokens import PublicKeys, TokenCodec, VerifiedTokens, load_or_create_secret
from prsm.serve.deps import GatewayDeps
from prsm.serve.model_catalog import BackendFactory, ModelCatalog
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.models import load_registry
from prsm.service_layer.ports import InferenceBackend

if TYPE_CHECKING:
    from prsm.runtime.agent import Complete
    from prsm.runtime.orchestrator import OrchestratorOptions
    from prsm.runtime.scheduler import SchedulerOptions

Store = SqliteStore | PostgresStore


def utc_now() -> datetime:
    return datetime.now(UTC)


async def open_store(settings: Settings) -> Store:
    url = settings.store_url
    if url.startswith(("postgres://", "postgresql://")):
        return await PostgresStore.open(url, schema=settings.postgres_schema or None)
    if url.startswith("sqlite:///"):
        return await SqliteStore.open(url.removeprefix("sqlite://"))
    if not url:
        return await SqliteStore.open(settings.sqlite_path)
    raise ValueError(f"PRSM_STORE_URL must be empty, sqlite:///PATH or postgresql://…, not {url!r}")


def describe_store(settings: Settings) -> str:
    url = settings.store_url or f"sqlite://{settings.sqlite_path}"
    if url.startswith("postgres") and "@" in url:  # never print credentials
        return "postgresql://…@" + url.split("@", 1)[1]
    return url


def token_codec(settings: Settings) -> TokenCodec:
    secret = load_or_create_secret(settings.secret_path) if settings.jwt_local_tokens else None
    keys = None
    if settings.jwt_jwks_file:
        keys = PublicKeys(Path(settings.jwt_jwks_file), jwks=True)
    elif settings.jwt_public_key_file:
        keys = PublicKeys(Path(settings.jwt_public_key_file), jwks=False)
    return TokenCodec(secret, settings.jwt_issuer, settings.jwt_audience, keys)


def rate_limiter(settings: Settings) -> RateLimiter:
    buckets = RedisBuckets(settings.redis_url) if settings.redis_url else LocalBuckets()
    return RateLimiter(parse_limits(settings.rate_limits), buckets, settings.rate_limit_fail_open)


def issue_token(
    settings: Settings,
    user_id: str = "admin",
    tenant_id: str = "default",
    roles: frozenset[str] = frozenset({"admin"}),
    ttl: timedelta | None = None,
) -> str:
    principal = Principal(user_id=user_id, tenant_id=tenant_id, roles=roles)
    lifetime = ttl or timedelta(seconds=settings.token_ttl_seconds)
    return token_codec(settings).issue(principal, utc_now(), lifetime)


def backend_factory(settings: Settings) -> BackendFactory:
    """How a gateway replica reaches each model version: vLLM deployments through Serve,
    external providers through their SDKs, with the key from this process's environment."""

    providers: dict[Framework, tuple[type[OpenAIBackend] | type[AnthropicBackend], str]] = {
        Framework.OPENAI: (OpenAIBackend, settings.openai_base_url),
        Framework.ANTHROPIC: (AnthropicBackend, settings.anthropic_base_url),
    }

    def make(d: Deployment) -> InferenceBackend:
        spec = d.spec
        if spec.framework in providers:
            backend, default_url = providers[spec.framework]
            return backend.from_env(
                spec.source,
                api_key_env=spec.api_key_env,
                base_url=spec.base_url or default_url or None,
                timeout_s=settings.inference_timeout_s,
            )
        from prsm.adapters.inference.vllm_serve import VllmServeBackend, app_name

        app = app_name(d.tenant_id, spec.name, spec.version)
        return VllmServeBackend(app, timeout_s=settings.inference_timeout_s)

    return make


def runtime_checks() -> dict[str, Callable[[], Awaitable[None]]]:
    """What a gateway replica's readiness needs besides its store: Ray, and the runtime
    actors that schedule and run the tasks it accepts and serve the models it routes to."""
    from prsm.runtime import actors, model_controller, orchestrator, scheduler

    names = {"scheduler": scheduler.NAME, "orchestrator": orchestrator.NAME,
             "model_controller": model_controller.NAME}  # fmt: skip
    checks: dict[str, Callable[[], Awaitable[None]]] = {"ray": local_cluster.check_ray}
    for check, name in names.items():
        checks[check] = functools.partial(actors.answers, name)
    return checks


async def build_gateway(raw_settings: dict[str, Any], in_ray: bool = True) -> GatewayDeps:
    """Everything one gateway replica needs (called inside each replica)."""
    settings = Settings(**raw_settings)
    configure_logging(settings.log_level)
    store = await open_store(settings)
    checks = runtime_checks() if in_ray else {}
    blobs = BlobStore(settings.result_store_uri)
    deps = GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway", skills=installed(), packages=blobs),
        blobs=blobs,
        max_package_bytes=settings.max_package_bytes,
        store=store,
        views=store,
        tokens=VerifiedTokens(token_codec(settings)),
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        ready_checks=checks,
        models=ModelCatalog(store, backend_factory(settings)),
        rate_limit=rate_limiter(settings).check,
        grant_key=model_grant_key(settings),
    )
    if in_ray:
        from prsm.adapters.inference.engine_io import preload_request_models
        from prsm.runtime import cluster_state, model_controller, rollout_stats
        from prsm.runtime.gateway_ports import OrchestratorAgents, SchedulerQueue

        deps.on_models_changed = model_controller.wake
        deps.record_call = rollout_stats.StatsRecorder().record
        deps.version_stats = rollout_stats.version_stats
        deps.traffic = rollout_stats.traffic
        deps.agents = OrchestratorAgents()
        deps.queue = SchedulerQueue()
        deps.origin = cluster_state.here()  # where tasks submitted here come from
        preload_request_models()
        deps.dashboard_port = settings.dashboard_port
    deps.grafana_url = settings.grafana_url or None
    # What the replica holds now (Ray, FastAPI, imports: hundreds of thousands of objects)
    # stays: out of the collector's reach, a full collection walks only what came later.
    gc.freeze()
    return deps


async def open_store_from(raw_settings: dict[str, Any]) -> Store:
    """The store, from settings as plain data (how actors open theirs)."""
    return await open_store(Settings(**raw_settings))


async def agent_model_caller(raw_settings: dict[str, Any]) -> Complete:
    """How agents call models: through the inference port, routed like the gateway routes
    (by the registry, rollouts included), as the task's owner."""
    settings = Settings(**raw_settings)
    catalog = ModelCatalog(await open_store(settings), backend_factory(settings))

    async def complete(tenant_id: str, user_id: str, item: dict[str, Any]) -> str:
        owner = Principal(user_id=user_id, tenant_id=tenant_id, roles=frozenset({"user"}))
        deployment, backend, _ = await catalog.resolve(owner, item["model"])
        body = {"model": deployment.backend_model, "max_tokens": item["max_tokens"],
                "messages": [{"role": "user", "content": item["prompt"]}]}  # fmt: skip
        answer = await backend.chat(body)
        assert isinstance(answer, dict), "not streamed"
        return str(answer["choices"][0]["message"]["content"])

    return complete


def scheduler_options(settings: Settings) -> SchedulerOptions:
    from prsm.runtime.scheduler import SchedulerOptions

    return SchedulerOptions(
        max_running=settings.tenant_max_running, max_cpu=settings.tenant_max_cpu
    )


def orchestrator_options(settings: Settings) -> OrchestratorOptions:
    from prsm.runtime.orchestrator import OrchestratorOptions

    return OrchestratorOptions(
        agents=dict(settings.agents),
        max_attempts=settings.task_max_attempts,
        backoff_s=settings.task_retry_backoff_s,
    )


def start_scheduler(settings: Settings) -> Any:
    from prsm.runtime import scheduler

    return scheduler.start(open_store_from, settings.for_replicas(), scheduler_options(settings))


def start_orchestrator(settings: Settings) -> Any:
    """The orchestrator, and the scheduler that hands it tasks."""
    from prsm.runtime import orchestrator

    start_scheduler(settings)
    return orchestrator.start(open_store_from, agent_model_caller, settings.for_replicas(),
                              orchestrator_options(settings))  # fmt: skip


def start_model_controller(settings: Settings) -> Any:
    from prsm.runtime import model_controller

    key = model_grant_key(settings)
    return model_controller.start(open_store_from, settings.for_replicas(), key)


def model_grant_key(settings: Settings) -> bytes | None:
    """The key of the gateway's grants to model replicas (``settings.edge``), derived from the
    token secret in the data dir; None without the edge, or where that secret cannot be read
    or made (requests then take the gateway's route, and replicas answer only through
    Serve)."""
    if not settings.edge:
        return None
    try:
        return grant_key(load_or_create_secret(settings.secret_path))
    except (OSError, AuthenticationError):
        return None


def tiny_model_spec(settings: Settings) -> ModelSpec:
    return ModelSpec(
        name=settings.default_model,
        version="v1",
        source=str(settings.tiny_model_path),
        max_model_len=tiny_model.MAX_POSITIONS,
        kv_cache_mb=64,
    )


async def register_models(settings: Settings, specs: list[ModelSpec]) -> list[Deployment]:
    """Register shared deployments unless they are already live (idempotent)."""
    store = await open_store(settings)
    try:
        admin = Principal(user_id="prsm", tenant_id=SHARED_TENANT, roles=frozenset({"admin"}))
        bus = MessageBus(store, store, utc_now, source="bootstrap", skills=installed())
        out = []
        for spec in specs:
            registry = await load_registry(store)
            existing = registry.deployments.get(
                deployment_key(SHARED_TENANT, spec.name, spec.version)
            )
            if existing is not None and existing.status in LIVE:
                out.append(existing)
                continue
            command = DeployModel(
                correlation_id=str(uuid.uuid4()), principal=admin, spec=spec, shared=True
            )
            out.append(await bus.handle(command))
        return out
    finally:
        await store.close()


async def register_default_model(settings: Settings) -> Deployment | None:
    """Build the tiny test model if needed and register it as a shared deployment (once)."""
    if not settings.default_model:
        return None
    tiny_model.ensure_tiny_model(settings.tiny_model_path)
    [deployment] = await register_models(settings, [tiny_model_spec(settings)])
    return deployment


async def model_status(settings: Settings, name: str, version: str) -> Deployment | None:
    """A shared (platform) deployment as the registry has it now."""
    store = await open_store(settings)
    try:
        registry = await load_registry(store)
        return registry.deployments.get(deployment_key(SHARED_TENANT, name, version))
    finally:
        await store.close()


def cluster(settings: Settings) -> local_cluster.LocalCluster:
    return local_cluster.LocalCluster(
        run_dir=settings.data_dir / "run",
        port=settings.ray_port,
        dashboard_port=settings.dashboard_port,
        num_cpus=settings.ray_num_cpus,
        metrics_port=settings.metrics_port,
    )


def http_options(settings: Settings) -> dict[str, Any]:
    """Serve's HTTP proxy: address, and HTTPS when a certificate and key are configured."""
    options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    if settings.tls_certfile or settings.tls_keyfile:
        options |= {"ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile}
    return options


def edge(settings: Settings) -> Edge:
    """The edge on the gateway's address (TLS there), in front of Serve's proxy."""
    return Edge(run_dir=settings.data_dir / "run", host=settings.http_host,
                port=settings.http_port, serve_port=settings.serve_port,
                route_port=settings.edge_route_port, tls_certfile=settings.tls_certfile,
                tls_keyfile=settings.tls_keyfile,
                max_header_bytes=settings.max_header_bytes)  # fmt: skip


def with_edge_ports(settings: Settings) -> Settings:
    """``settings`` with the edge's two inner ports chosen (free ones where they are 0)."""
    if not settings.edge:
        return settings
    return settings.model_copy(update={
        "serve_port": settings.serve_port or local_cluster.free_port(),
        "edge_route_port": settings.edge_route_port or local_cluster.free_port(),
    })  # fmt: skip


def start_serve(settings: Settings) -> None:
    """Serve's proxy, behind the edge when ``settings.edge`` (on 127.0.0.1, ``serve_port``;
    ``with_edge_ports`` chose it). The edge itself starts with ``edge(settings).start()``,
    once the gateway's replicas answer its routing port."""
    from ray import serve

    if settings.edge:
        serve.start(http_options={"host": "127.0.0.1", "port": settings.serve_port})
    else:
        serve.start(http_options=http_options(settings))


def deploy_gateway(settings: Settings) -> None:
    """Run the gateway application on the local cluster's Serve (waits until it runs)."""
    from ray import serve

    from prsm.serve.deployment import gateway_app

    cluster(settings).connect()
    start_orchestrator(settings)
    settings = with_edge_ports(settings)
    start_serve(settings)
    app = gateway_app(build_gateway, settings.for_replicas(), settings.gateway_replicas)
    serve.run(app, name="prsm", route_prefix="/")
    if settings.edge:
        edge(settings).start()
    start_model_controller(settings)


def shutdown_serve(settings: Settings) -> None:
    from ray import serve

    from prsm.runtime import model_controller, orchestrator, scheduler

    cluster(settings).connect()
    scheduler.stop()
    orchestrator.stop()
    model_controller.stop()
    serve.shutdown()  # type: ignore[no-untyped-call]
    local_cluster.disconnect()
