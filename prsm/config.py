"""Settings: every ``PRSM_*`` environment variable, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """PRSM's configuration. Each field is read from ``PRSM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PRSM_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("prsm"),
        description="Where the embedded store, the token secret and run files live.",
    )
    store_url: str = Field(
        default="",
        description="Event store: empty for SQLite in the data dir, or a postgresql:// DSN.",
    )
    postgres_schema: str = Field(default="", description="PostgreSQL schema (default: public).")
    http_host: str = Field(default="127.0.0.1", description="Gateway bind address.")
    http_port: int = Field(default=8000, description="Gateway port.")
    edge: bool = Field(
        default=True,
        description="`prsm up` puts its edge (HAProxy) on the gateway port, in front of Serve's "
        "proxy: chat and completion answers stream from the model replicas through it alone. "
        "Off: Serve's proxy listens on the gateway port.",
    )
    serve_port: int = Field(
        default=0, ge=0, description="Serve's proxy port behind the edge, on 127.0.0.1 (0: a "
        "free port, chosen at each start).",
    )  # fmt: skip
    edge_route_port: int = Field(
        default=0, ge=0, description="Where the gateway replicas answer the edge's routing "
        "questions, on 127.0.0.1 (0: a free port, chosen at each start).",
    )  # fmt: skip
    ray_port: int = Field(default=6380, description="Local Ray head port (Redis holds 6379).")
    dashboard_port: int = Field(default=8265, description="Ray dashboard port.")
    grafana_url: str = Field(
        default="", max_length=2048, pattern=r"^(https?://\S+)?$",
        description="Grafana's address (http or https), linked from the console (empty: no link).",
    )  # fmt: skip
    metrics_port: int = Field(
        default=8266, description="Port of Ray's metrics export (Prometheus) on the local head."
    )
    ray_num_cpus: int = Field(default=8, description="Logical CPUs of the local Ray head.")
    gateway_replicas: int = Field(default=1, ge=1, description="Gateway replicas on Serve.")
    jwt_issuer: str = Field(default="prsm", description="`iss` of the tokens PRSM accepts.")
    jwt_audience: str = Field(default="prsm", description="`aud` of the tokens PRSM accepts.")
    token_ttl_seconds: int = Field(default=30 * 86400, description="Lifetime of issued tokens.")
    max_body_bytes: int = Field(default=1_048_576, description="Largest request body (413).")
    max_package_bytes: int = Field(
        default=100 * 2**20, description="Largest package upload (POST /v1/packages)."
    )
    max_header_bytes: int = Field(
        default=16_384, description="Largest total of request headers (431)."
    )
    tls_certfile: str = Field(default="", description="PEM certificate: the gateway serves HTTPS.")
    tls_keyfile: str = Field(default="", description="PEM private key of `tls_certfile`.")
    log_level: str = Field(default="INFO", description="Log level of PRSM's components.")
    default_model: str = Field(
        default="prsm-tiny",
        description="Name of the built-in tiny test model `prsm up` serves (empty: none).",
    )
    model_wait_seconds: int = Field(
        default=600, ge=0, description="How long `prsm up` waits for the default model."
    )
    inference_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Timeout of a call to a model provider, and of the first answer of a "
        "model on Serve.",
    )
    openai_base_url: str = Field(default="", description="OpenAI API endpoint (default: SDK's).")
    anthropic_base_url: str = Field(
        default="", description="Anthropic API endpoint (default: the SDK's)."
    )
    redis_url: str = Field(
        default="", description="Redis for cluster-wide rate limits (empty: in-process)."
    )
    rate_limits: str = Field(
        default="inference=100/200,tasks=100/200,reads=200/400",
        description="Token buckets per principal and route class: CLASS=PER_SECOND/BURST.",
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description="Let requests through (true) or refuse them (503) when "
        "Redis cannot be reached.",
    )
    jwt_public_key_file: str = Field(
        default="", description="PEM public key of the identity provider (RS256 tokens)."
    )
    jwt_jwks_file: str = Field(
        default="", description="JWKS file of the identity provider (RS256, keys by `kid`)."
    )
    jwt_local_tokens: bool = Field(
        default=True, description="Accept and issue HS256 tokens signed with the local secret."
    )
    agents: dict[str, int] = Field(
        default={"compute": 2, "simulation": 2, "llm": 1},
        description="Agent actors the orchestrator keeps running, by agent type.",
    )
    task_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries of a subtask before it fails for good."
    )
    task_retry_backoff_s: float = Field(
        default=0.5, ge=0, le=600, description="Wait before a subtask's first retry (doubles)."
    )
    tenant_max_running: int = Field(
        default=50, ge=1, description="Tasks a tenant may have scheduled or running at once."
    )
    tenant_max_cpu: float = Field(
        default=256, gt=0, description="CPUs a tenant's scheduled and running tasks may reserve."
    )
    result_store: str = Field(
        default="",
        description="Where large results and shipped code are kept, by sha256: a directory or a "
        "pyarrow filesystem URI such as s3://bucket/prefix (empty: `results` in the data dir).",
    )
    result_inline_max_bytes: int = Field(
        default=65_536, ge=0, description="Outputs whose JSON is larger go to the result store."
    )
    skill_timeout_s: float = Field(
        default=900.0, gt=0, description="Timeout of one subtask of a skill that sets none."
    )
    url: str = Field(default="", description="Gateway URL for the CLI and SDK.")
    token: str = Field(default="", description="Bearer token for the CLI and SDK.")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "prsm.db"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "jwt_secret"

    @property
    def result_store_uri(self) -> str:
        return self.result_store or str(self.data_dir / "results")

    @property
    def tiny_model_path(self) -> Path:
        return self.data_dir / "models" / "prsm-tiny-llama"

    @property
    def gateway_url(self) -> str:
        scheme = "https" if self.tls_certfile else "http"
        return self.url or f"{scheme}://{self.http_host}:{self.http_port}"

    def for_replicas(self) -> dict[str, Any]:
        """The settings as plain data, to hand to Ray actors and Serve replicas (the CLI's
        own token stays behind: init arguments show in Serve's status), the result store
        resolved."""
        return {**self.model_dump(mode="json", exclude={"token"}),
                "result_store": self.result_store_uri}  # fmt: skip
