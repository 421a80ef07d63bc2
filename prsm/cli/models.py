"""``prsm models``: deploy, list, inspect and undeploy model versions."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from prsm.api.models import DeploymentOut
from prsm.cli.common import JsonFlag, client, console, given, print_json
from prsm.domain.models import Accelerator, Framework, ModelStatus, Strategy

models_app = typer.Typer(help="Deploy, list and undeploy model versions.", no_args_is_help=True)


def _show(deployments: list[DeploymentOut], as_json: bool) -> None:
    if as_json:
        print_json(deployments)
        return
    table = Table("model", "shared", "framework", "strategy", "status", "healthy", "detail")
    for d in deployments:
        table.add_row(
            d.id, "yes" if d.shared else "", d.framework.value, d.strategy.value,
            d.status.value, "yes" if d.healthy else "no", d.detail[:60],
        )  # fmt: skip
    console.print(table)


@models_app.command("deploy")
def deploy(
    name: Annotated[str, typer.Argument(help="Model name clients use.")],
    version: Annotated[str, typer.Argument(help="Version, e.g. v2.")],
    source: Annotated[
        str | None, typer.Option(help="HF model dir or hub id; provider model.")
    ] = None,
    framework: Annotated[
        Framework | None, typer.Option(help="vllm (default), openai, anthropic.")
    ] = None,
    strategy: Annotated[Strategy | None, typer.Option(help="Default: SINGLE_NODE.")] = None,
    replicas: Annotated[int | None, typer.Option(help="REPLICATED: replica count.")] = None,
    min_replicas: Annotated[int | None, typer.Option(help="Autoscaling lower bound.")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="Autoscaling upper bound.")] = None,
    tensor_parallel: Annotated[int | None, typer.Option(help="DISTRIBUTED: TP size.")] = None,
    pipeline_parallel: Annotated[int | None, typer.Option(help="DISTRIBUTED: PP size.")] = None,
    placement: Annotated[
        str | None, typer.Option(help="PACK (default), SPREAD, STRICT_PACK, …")
    ] = None,
    accelerator: Annotated[Accelerator | None, typer.Option(help="cpu (default) or gpu.")] = None,
    cpus_per_worker: Annotated[
        int | None, typer.Option(help="CPUs per engine worker (default 1); its CPU threads.")
    ] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Context length.")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Providers: key variable.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Providers: API endpoint.")] = None,
    shared: Annotated[bool | None, typer.Option(help="Usable by every tenant (admins).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until READY or FAILED.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Deploy a model version on the platform."""
    sdk = client()
    deployment = sdk.deploy_model(name, version, **given(
        source=source, framework=framework, strategy=strategy,
        replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
        tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
        placement=placement, accelerator=accelerator, cpus_per_worker=cpus_per_worker,
        max_model_len=max_model_len, api_key_env=api_key_env, base_url=base_url, shared=shared,
    ))  # fmt: skip
    deadline = time.monotonic() + timeout
    while wait and deployment.status is ModelStatus.DEPLOYING and time.monotonic() < deadline:
        time.sleep(2)
        deployment = sdk.deployment(name, version)
    _show([deployment], as_json)
    if deployment.status is ModelStatus.FAILED:
        raise typer.Exit(1)


@models_app.command("list")
def list_deployments(as_json: JsonFlag = False) -> None:
    """Model versions of your tenant, and the shared ones (shared: yes) you can call."""
    _show(client().deployments(), as_json)


@models_app.command("get")
def get_deployment(name: str, version: str, as_json: JsonFlag = False) -> None:
    """One model version."""
    _show([client().deployment(name, version)], as_json)


@models_app.command("faults")
def faults(
    name: str,
    version: str,
    error_rate: Annotated[float, typer.Option(help="Share of requests to fail, 0..1.")] = 0.0,
    latency_ms: Annotated[int, typer.Option(help="Milliseconds added to each request.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Inject faults into a version's traffic for a drill (no options: remove them)."""
    _show([client().set_faults(name, version, error_rate, latency_ms)], as_json)


@models_app.command("undeploy")
def undeploy(name: str, version: str, as_json: JsonFlag = False) -> None:
    """Remove a model version from Serve and free its resources."""
    _show([client().undeploy_model(name, version)], as_json)
