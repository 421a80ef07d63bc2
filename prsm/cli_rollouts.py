"""``prsm rollout``: start, follow, promote and abort canary rollouts of model versions."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from prsm.cli_models import JsonFlag, _client
from prsm.domain.rollout_policy import NoDataAction, RolloutStatus
from prsm.serve.rollout_schemas import RolloutOut

rollout_app = typer.Typer(help="Canary rollouts of model versions.", no_args_is_help=True)
console = Console()


def _table(rollouts: list[RolloutOut]) -> Table:
    table = Table("id", "model", "from", "to", "status", "traffic to new", "started")
    for r in rollouts:
        table.add_row(
            r.id, r.model, r.current_version, r.new_version, r.status.value,
            f"{r.percent:g} %", r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    return table


def _show(rollouts: list[RolloutOut], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in rollouts]))
    else:
        console.print(_table(rollouts))


def view(r: RolloutOut) -> Group:
    """The live view: the traffic split, each version's figures, the last decisions."""
    head = Text(f"{r.id}  {r.model}: {r.current_version} → {r.new_version}  ", style="bold")
    head.append(r.status.value, style="green" if r.status is RolloutStatus.COMPLETED else "")
    split = Table.grid(padding=(0, 1))
    for version in (r.current_version, r.new_version):
        share = r.traffic.get(version, 0.0)
        split.add_row(version, ProgressBar(total=100, completed=share, width=40), f"{share:g} %")
    figures = Table("version", "requests", "errors", "success", "p95 ms", title="this step")
    for version, s in r.window.items():
        p95 = "-" if s.p95_ms is None else f"{s.p95_ms:.1f}"
        figures.add_row(version, str(s.requests), str(s.errors), f"{s.success_rate:.3f}", p95)
    decisions = Table("at", "decision", "new %", "reason", title="decisions")
    for d in r.history[-6:]:
        decisions.add_row(
            d.at.strftime("%H:%M:%S"), d.decision.removeprefix("Rollout"),
            "" if d.percent is None else f"{d.percent:g}", (d.reason or "")[:70],
        )  # fmt: skip
    parts: list[Table | Text] = [head, split, figures, decisions]
    if r.next_evaluation_at is not None:
        parts.append(Text(f"next evaluation {r.next_evaluation_at:%H:%M:%S} UTC", style="dim"))
    return Group(*parts)


@rollout_app.command("start")
def start(
    model: Annotated[str, typer.Argument(help="The model whose traffic moves.")],
    version: Annotated[str, typer.Option("--version", help="The new version, e.g. v2.")],
    current_version: Annotated[str | None, typer.Option(help="Default: serving now.")] = None,
    source: Annotated[str | None, typer.Option(help="New weights (default: current).")] = None,
    initial_percent: Annotated[float, typer.Option(help="First share, %.")] = 5.0,
    step_factor: Annotated[float, typer.Option(help="Share multiplier per step.")] = 2.0,
    interval: Annotated[float, typer.Option(help="Evaluation interval, s.")] = 300.0,
    min_window: Annotated[float, typer.Option(help="Observation per step, s.")] = 3600.0,
    min_samples: Annotated[int, typer.Option(help="Requests needed to judge.")] = 100,
    min_success_rate: Annotated[float, typer.Option(help="Lowest success rate.")] = 0.95,
    max_latency_ratio: Annotated[float, typer.Option(help="Highest p95 ratio.")] = 1.10,
    max_empty_intervals: Annotated[int, typer.Option(help="Before on-no-data.")] = 3,
    on_no_data: Annotated[NoDataAction, typer.Option(help="HOLD or ABORT.")] = (NoDataAction.HOLD),
    sticky: Annotated[bool, typer.Option(help="Each user keeps one version.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deploy VERSION beside the model's current version and move traffic to it."""
    policy = {
        "initial_percent": initial_percent, "step_factor": step_factor,
        "evaluation_interval_s": interval, "min_window_s": min_window,
        "min_samples": min_samples, "min_success_rate": min_success_rate,
        "max_latency_ratio": max_latency_ratio, "max_empty_intervals": max_empty_intervals,
        "on_no_data": on_no_data, "sticky": sticky,
    }  # fmt: skip
    rollout = _client().start_rollout(
        model, version, current_version=current_version, source=source, policy=policy
    )
    _show([rollout], as_json)


@rollout_app.command("list")
def list_rollouts(
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rollouts of your tenant, newest first."""
    _show(_client().rollouts(model), as_json)


@rollout_app.command("status")
def status(rollout_id: str, as_json: JsonFlag = False) -> None:
    """One rollout: split, live figures, decisions."""
    rollout = _client().rollout(rollout_id)
    if as_json:
        console.print_json(rollout.model_dump_json())
    else:
        console.print(view(rollout))


@rollout_app.command("watch")
def watch(
    rollout_id: str,
    every: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Follow a rollout live until it ends (Ctrl-C leaves it running)."""
    client = _client()
    rollout = client.rollout(rollout_id)
    with Live(view(rollout), console=console, refresh_per_second=4) as live:
        while rollout.status is RolloutStatus.IN_PROGRESS:
            time.sleep(every)
            rollout = client.rollout(rollout_id)
            live.update(view(rollout))
    if rollout.status is not RolloutStatus.COMPLETED:
        raise typer.Exit(1)


@rollout_app.command("promote")
def promote(rollout_id: str, as_json: JsonFlag = False) -> None:
    """Send all traffic to the new version now; the old one is retired."""
    _show([_client().promote_rollout(rollout_id)], as_json)


@rollout_app.command("abort")
def abort(rollout_id: str, as_json: JsonFlag = False) -> None:
    """Send all traffic back to the current version; the new one is removed."""
    _show([_client().abort_rollout(rollout_id)], as_json)
