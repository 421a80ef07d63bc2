"""The composition root: builds the store, bus and gateway from settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prsm.adapters.store.postgres import PostgresStore
from prsm.adapters.store.sqlite import SqliteStore
from prsm.config import Settings
from prsm.domain.identity import Principal
from prsm.observability.logging import configure as configure_logging
from prsm.runtime import local_cluster
from prsm.security.tokens import TokenCodec, VerifiedTokens, load_or_create_secret
from prsm.serve.deps import GatewayDeps
from prsm.service_layer.messagebus import MessageBus

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
    secret = load_or_create_secret(settings.secret_path)
    return TokenCodec(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


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


async def build_gateway(raw_settings: dict[str, Any], in_ray: bool = True) -> GatewayDeps:
    """Everything one gateway replica needs (called inside each replica)."""
    settings = Settings(**raw_settings)
    configure_logging(settings.log_level)
    store = await open_store(settings)
    checks = {"ray": local_cluster.check_ray} if in_ray else {}
    return GatewayDeps(
        bus=MessageBus(store, store, utc_now, source="gateway"),
        store=store,
        views=store,
        tokens=VerifiedTokens(token_codec(settings)),
        max_body_bytes=settings.max_body_bytes,
        ready_checks=checks,
    )


def cluster(settings: Settings) -> local_cluster.LocalCluster:
    return local_cluster.LocalCluster(
        run_dir=settings.data_dir / "run",
        port=settings.ray_port,
        dashboard_port=settings.dashboard_port,
        num_cpus=settings.ray_num_cpus,
    )


def deploy_gateway(settings: Settings) -> None:
    """Run the gateway application on the local cluster's Serve (waits until it runs)."""
    from ray import serve

    from prsm.serve.deployment import gateway_app

    cluster(settings).connect()
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
    app = gateway_app(build_gateway, settings.for_replicas(), settings.gateway_replicas)
    serve.run(app, name="prsm", route_prefix="/")


def shutdown_serve(settings: Settings) -> None:
    from ray import serve

    cluster(settings).connect()
    serve.shutdown()  # type: ignore[no-untyped-call]
    local_cluster.disconnect()
