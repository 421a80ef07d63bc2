"""``prsm submit`` and ``prsm tasks``: submit, list, inspect, follow and cancel tasks."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from prsm.api.tasks import Resources, TaskOut
from prsm.cli.common import JsonFlag, client, console, err, given, print_json
from prsm.domain.tasks import CoordinationStrategy, ResourceRequest, TaskStatus

_R = ResourceRequest()  # the platform's defaults, for the help texts only
tasks_app = typer.Typer(help="List, inspect and cancel your tasks.", no_args_is_help=True)


def _show(tasks: list[TaskOut], as_json: bool) -> None:
    if as_json:
        print_json(tasks)
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


def submit(
    task_type: Annotated[str, typer.Argument(help="Task type, e.g. map_reduce.")],
    params: Annotated[str, typer.Option(help="Parameters as a JSON object.")] = "{}",
    priority: Annotated[int | None, typer.Option(help="-100..100, higher first.")] = None,
    cpu: Annotated[float | None, typer.Option(help=f"CPU cores ({_R.cpu:g}).")] = None,
    gpu: Annotated[float | None, typer.Option(help=f"GPUs ({_R.gpu:g}).")] = None,
    memory_mb: Annotated[int | None, typer.Option(help="Memory in MiB.")] = None,
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
    runtime_env: Annotated[
        str,
        typer.Option(
            help='Code to ship, as JSON: \'{"working_dir": "./", "pip": '
            '["dist/x.whl"]}\' (local folders and wheels are uploaded).'
        ),
    ] = "{}",
    as_json: JsonFlag = False,
) -> None:
    """Submit a task: map, map_reduce, pipeline, sweep or prompt (see the README)."""
    try:
        parsed: Any = json.loads(params)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--params is not JSON: {exc}") from None
    resources = Resources(**given(cpu=cpu, gpu=gpu, memory_mb=memory_mb))
    try:
        where: Any = json.loads(placement)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--placement is not JSON: {exc}") from None
    try:
        code: Any = json.loads(runtime_env)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--runtime-env is not JSON: {exc}") from None
    task = client().submit(
        task_type, parsed, priority=priority, resources=resources, strategy=strategy,
        placement=where, dependencies=depends_on, idempotency_key=idempotency_key,
        runtime_env=code or None,
    )  # fmt: skip
    _show([task], as_json)


@tasks_app.command("result")
def result(
    task_id: str,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write it to this file.")
    ] = None,
) -> None:
    """A finished task's result: printed as JSON, or streamed into a file (-o)."""
    if output is None:
        print(json.dumps(client().result(task_id)))
        return
    written = client().download_result(task_id, output)
    err.print(f"{written} bytes written to {output}")


@tasks_app.command("list")
def list_tasks(
    status: Annotated[TaskStatus | None, typer.Option(help="Only tasks in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[int | None, typer.Option(help="`next_cursor` of the previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your tasks, newest first."""
    page = client().list_tasks(status, limit, cursor)
    _show(page.tasks, as_json)
    if page.next_cursor and not as_json:
        err.print(f"more: --cursor {page.next_cursor}")


@tasks_app.command("get")
def get_task(task_id: str, as_json: JsonFlag = False) -> None:
    """One task, and where its subtasks ran."""
    task = client().get(task_id)
    _show([task], as_json)
    if task.ran_on and not as_json:
        table = Table("node", "bundle", "completed", "failed", title="where it ran")
        for p in task.ran_on:
            bundle = "pooled" if p.bundle is None else str(p.bundle)
            table.add_row(p.node_id[:12], bundle, str(p.completed), str(p.failed))
        console.print(table)


@tasks_app.command("watch")
def watch_task(
    task_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
    as_json: JsonFlag = False,
) -> None:
    """Follow a task with a live progress bar until it ends; then print it with its result."""
    sdk = client()
    task = sdk.get(task_id)
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
            task = sdk.get(task_id)
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
    _show([client().cancel(task_id)], as_json)
