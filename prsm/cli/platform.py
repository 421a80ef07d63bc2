"""``prsm up | down | status | token``: the local platform and its tokens."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

import httpx
import typer

from prsm import bootstrap
from prsm.cli import observability
from prsm.cli.common import console, err
from prsm.config import Settings
from prsm.domain.models import ModelStatus


def _wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the gateway at {url} did not become healthy in {timeout_s:.0f} s")


def up() -> None:
    """Start a local Ray cluster and the gateway on Serve, with the embedded store."""
    settings = Settings()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cluster = bootstrap.cluster(settings)
    err.print(f"Starting Ray head on {cluster.address} …")
    cluster.start()
    err.print("Deploying the gateway on Ray Serve …")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    bootstrap.deploy_gateway(settings)
    _wait_healthy(settings.gateway_url, 60)
    model = _serve_default_model(settings)
    token = bootstrap.issue_token(settings)
    url = settings.gateway_url
    print(f"""PRSM is up.
  Gateway     {url}   (API docs: {url}/docs)
  Dashboard   http://127.0.0.1:{settings.dashboard_port}
  Store       {bootstrap.describe_store(settings)}
  Data dir    {settings.data_dir}
Local admin token (tenant "default"):
  export PRSM_TOKEN={token}
Batch jobs (`ray job submit`; Ray's token authentication is on):
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.auth_env()["RAY_AUTH_TOKEN_PATH"]}
  ray job submit --address http://127.0.0.1:{settings.dashboard_port} --working-dir . -- \\
    python jobs/batch_inference.py --input prompts.jsonl --model prsm-tiny --output out/
{observability.instructions(settings)}
Try:
  curl -H "Authorization: Bearer $PRSM_TOKEN" {url}/v1/whoami""")
    if model:
        print(f"""  curl -H "Authorization: Bearer $PRSM_TOKEN" {url}/v1/chat/completions \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}'
  ({model} is PRSM's plumbing test model: random weights, so its answers are noise.)""")


def _serve_default_model(settings: Settings) -> str:
    """Register the built-in tiny model and wait for its first token through the gateway;
    its name, or '' if it does not serve in time."""
    if not settings.default_model:
        return ""
    name = settings.default_model
    err.print(f"Serving the test model {name} with vLLM on the CPU …")
    asyncio.run(bootstrap.register_default_model(settings))
    headers = {"Authorization": f"Bearer {bootstrap.issue_token(settings)}"}
    ask = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + settings.model_wait_seconds
    with httpx.Client(base_url=settings.gateway_url, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline:
            try:
                if http.post("/v1/chat/completions", json=ask).status_code == 200:
                    return name
            except httpx.TimeoutException:
                pass  # a busy machine: the engine is still starting; ask again
            found = asyncio.run(bootstrap.model_status(settings, name, "v1"))
            if found is not None and found.status is ModelStatus.FAILED:
                err.print(f"[yellow]warning[/] {name} failed to deploy: {found.detail}")
                return ""
            time.sleep(1)
    err.print(f"[yellow]warning[/] {name} is not serving after {settings.model_wait_seconds} s")
    return ""


def down() -> None:
    """Stop the gateway and the local Ray cluster. Tasks stay in the store."""
    settings = Settings()
    cluster = bootstrap.cluster(settings)
    if cluster.pid() is None:
        err.print("PRSM is not running.")
        return
    try:
        bootstrap.shutdown_serve(settings)
    except (ConnectionError, RuntimeError) as exc:
        err.print(f"Serve did not shut down cleanly ({exc}); stopping Ray anyway.")
    bootstrap.edge(settings).stop()
    cluster.stop()
    console.print("PRSM is down.")


def status() -> None:
    """Is the platform up, and is it ready?"""
    settings = Settings()
    pid = bootstrap.cluster(settings).pid()
    console.print(f"Ray head   {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    if settings.edge:
        edge = bootstrap.edge(settings).pid()
        console.print(f"Edge       {'running (pid ' + str(edge) + ')' if edge else 'stopped'}")
    try:
        ready = httpx.get(f"{settings.gateway_url}/ready", timeout=5)
        console.print(f"Gateway    {settings.gateway_url}: {ready.json()}")
    except httpx.HTTPError as exc:
        console.print(f"Gateway    {settings.gateway_url}: unreachable ({exc.__class__.__name__})")
        raise typer.Exit(1) from None


def token(
    user: Annotated[str, typer.Option(help="User id (`sub`).")] = "admin",
    tenant: Annotated[str, typer.Option(help="Tenant id.")] = "default",
    role: Annotated[list[str] | None, typer.Option(help="Role; repeat for several.")] = None,
) -> None:
    """Print a bearer token signed with this machine's PRSM secret."""
    roles = frozenset(role) if role else frozenset({"admin"})
    print(bootstrap.issue_token(Settings(), user, tenant, roles))
