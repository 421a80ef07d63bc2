"""The ``prsm`` command: bring the local platform up and down, issue tokens, submit and follow
tasks."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from prsm import bootstrap
from prsm.cli_keys import keys_app
from prsm.cli_models import models_app
from prsm.cli_rollouts import rollout_app
from prsm.client import PrsmAPIError, PrsmClient
from prsm.config import Settings
from prsm.domain.models import ModelStatus
from prsm.domain.tasks import CoordinationStrategy, TaskStatus
from prsm.serve.schemas import Resources, TaskOut

app = typer.Typer(help="PRSM: AI work for scientific computing on Ray.", no_args_is_help=True)
tasks_app = typer.Typer(help="List, inspect and cancel your tasks.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(models_app, name="models")
app.add_typer(rollout_app, name="rollout")
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _client(settings: Settings) -> PrsmClient:
    token = settings.token or bootstrap.issue_token(settings)
    return PrsmClient(settings.gateway_url, token)


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


@app.command()
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
            if http.post("/v1/chat/completions", json=ask).status_code == 200:
                return name
            found = asyncio.run(bootstrap.model_status(settings, name, "v1"))
            if found is not None and found.status is ModelStatus.FAILED:
                err.print(f"[yellow]warning[/] {name} failed to deploy: {found.detail}")
                return ""
            time.sleep(1)
    err.print(f"[yellow]warning[/] {name} is not serving after {settings.model_wait_seconds} s")
    return ""


@app.command()
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
    cluster.stop()
    console.print("PRSM is down.")


@app.command()
def status() -> None:
    """Is the platform up, and is it ready?"""
    settings = Settings()
    pid = bootstrap.cluster(settings).pid()
    console.print(f"Ray head   {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    try:
        ready = httpx.get(f"{settings.gateway_url}/ready", timeout=5)
        console.print(f"Gateway    {settings.gateway_url}: {ready.json()}")
    except httpx.HTTPError as exc:
        console.print(f"Gateway    {settings.gateway_url}: unreachable ({exc.__class__.__name__})")
        raise typer.Exit(1) from None


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id (`sub`).")] = "admin",
    tenant: Annotated[str, typer.Option(help="Tenant id.")] = "default",
    role: Annotated[list[str] | None, typer.Option(help="Role; repeat for several.")] = None,
) -> None:
    """Print a bearer token signed with this machine's PRSM secret."""
    roles = frozenset(role) if role else frozenset({"admin"})
    print(bootstrap.issue_token(Settings(), user, tenant, roles))


def _show(tasks: list[TaskOut], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([t.model_dump(mode="json") for t in tasks]))
        return
    table = Table("type", "status", "priority", "progress", "queue")
    table.add_column("id", no_wrap=True)
    table.add_column("submitted", no_wrap=True)
    for t in tasks:
        when = t.submitted_at.strftime("%Y-%m-%d %H:%M:%S")
        queue = (
            "" if t.queue is None else f"#{t.queue.position}, ~{t.queue.estimated_start_s:.0f} s"
        )
        if t.queue is not None and t.queue.reason:
            queue += f" ({t.queue.reason})"
        table.add_row(t.type, t.status.value, str(t.priority), f"{t.progress:.0f}%", queue, t.id,
                      when)  # fmt: skip
    console.print(table)


@app.command()
def submit(
    task_type: Annotated[str, typer.Argument(help="Task type, e.g. map_reduce.")],
    params: Annotated[str, typer.Option(help="Parameters as a JSON object.")] = "{}",
    priority: Annotated[int, typer.Option(help="-100..100, higher first.")] = 0,
    cpu: Annotated[float, typer.Option(help="CPU cores.")] = 1.0,
    gpu: Annotated[float, typer.Option(help="GPUs.")] = 0.0,
    memory_mb: Annotated[int, typer.Option(help="Memory in MiB.")] = 0,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes retries safe.")] = None,
    strategy: Annotated[
        CoordinationStrategy | None, typer.Option(help="Default: the task type's own.")
    ] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option("--depends-on", help="A task that must succeed first.")
    ] = None,
    placement: Annotated[
        str, typer.Option(help='Placement as JSON, e.g. \'{"strategy": "distribution"}\'.')
    ] = "{}",
    as_json: JsonFlag = False,
) -> None:
    """Submit a task: map, map_reduce, pipeline, sweep or prompt (see the README)."""
    try:
        parsed: Any = json.loads(params)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--params is not JSON: {exc}") from None
    resources = Resources(cpu=cpu, gpu=gpu, memory_mb=memory_mb)
    try:
        where: Any = json.loads(placement)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--placement is not JSON: {exc}") from None
    task = _client(Settings()).submit(
        task_type, parsed, priority=priority, resources=resources, strategy=strategy,
        placement=where, dependencies=depends_on, idempotency_key=idempotency_key,
    )  # fmt: skip
    _show([task], as_json)


@tasks_app.command("list")
def list_tasks(
    status: Annotated[TaskStatus | None, typer.Option(help="Only tasks in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[int | None, typer.Option(help="`next_cursor` of the previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your tasks, newest first."""
    page = _client(Settings()).list_tasks(status, limit, cursor)
    _show(page.tasks, as_json)
    if page.next_cursor and not as_json:
        err.print(f"more: --cursor {page.next_cursor}")


@tasks_app.command("get")
def get_task(task_id: str, as_json: JsonFlag = False) -> None:
    """One task."""
    _show([_client(Settings()).get(task_id)], as_json)


@tasks_app.command("watch")
def watch_task(
    task_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
    as_json: JsonFlag = False,
) -> None:
    """Follow a task with a live progress bar until it ends; then print it with its result."""
    client = _client(Settings())
    task = client.get(task_id)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err,
    ) as bar:  # fmt: skip
        line = bar.add_task(f"{task.type} {task.id[:8]}", total=100, status=task.status.value)
        while True:
            bar.update(line, completed=task.progress, status=task.status.value)
            if task.status.is_terminal:
                break
            time.sleep(interval)
            task = client.get(task_id)
    _show([task], as_json)
    if not as_json:
        if task.error:
            err.print(f"[red]{task.status.value}[/] {task.error}")
        if task.result is not None:
            console.print_json(json.dumps(task.result))
    if task.status is not TaskStatus.SUCCEEDED:
        raise typer.Exit(1)


@tasks_app.command("cancel")
def cancel_task(task_id: str, as_json: JsonFlag = False) -> None:
    """Cancel a task that has not finished."""
    _show([_client(Settings()).cancel(task_id)], as_json)


@app.command()
def agents(as_json: JsonFlag = False) -> None:
    """The orchestrator's agents, with their status and load."""
    rows = _client(Settings()).agents()
    if as_json:
        console.print_json(json.dumps([a.model_dump(mode="json") for a in rows]))
        return
    table = Table("id", "type", "status", "load", "running", "done", "capabilities")
    for a in rows:
        table.add_row(a.id, a.type, a.status, f"{a.load:.0%}", str(a.running), str(a.done),
                      ", ".join(a.capabilities))  # fmt: skip
    console.print(table)


@app.command()
def cluster(as_json: JsonFlag = False) -> None:
    """The cluster's nodes: capacity, free resources, use; queued tasks and allocations."""
    view = _client(Settings()).cluster()
    if as_json:
        console.print_json(view.model_dump_json())
        return
    table = Table("node", "zone", "CPU free/total", "GPU free/total", "memory GiB free/total",
                  "CPU use (machine)", "allocations")  # fmt: skip
    for n in view.nodes:
        used = n.report.get("cpu_percent")
        table.add_row(n.node_id[:12], n.zone or "-", f"{n.free['CPU']:g}/{n.total['CPU']:g}",
                      f"{n.free['GPU']:g}/{n.total['GPU']:g}",
                      f"{n.free['memory'] / 2**30:.1f}/{n.total['memory'] / 2**30:.1f}",
                      "-" if used is None else f"{used:.0f}%", str(n.allocations))  # fmt: skip
    console.print(table)
    console.print(
        f"{len(view.nodes)} node(s), {view.free['CPU']:g} of {view.total['CPU']:g} "
        f"CPU free, {view.queued} task(s) queued, {view.allocations} allocation(s)"
    )


def main() -> None:
    try:
        app()
    except PrsmAPIError as exc:
        err.print(f"[red]error[/] {exc}")
        sys.exit(1)
    except httpx.ConnectError:
        err.print("[red]error[/] the gateway is unreachable; is PRSM up? (`prsm up`)")
        sys.exit(1)
    except RuntimeError as exc:  # the local cluster could not start or be reached
        err.print(f"[red]error[/] {exc}")
        sys.exit(1)
