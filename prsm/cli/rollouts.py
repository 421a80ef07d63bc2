"""``prsm rollout``: start, follow, promote and abort canary rollouts of model versions."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from prsm.api.rollouts import RolloutOut
from prsm.cli.common import JsonFlag, client, console, given, print_json
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus

_P = RolloutPolicy()  # the platform's defaults, for the help texts only: left out, not sent
rollout_app = typer.Typer(help="Canary rollouts of model versions.", no_args_is_help=True)


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
        print_json(rollouts)
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
    initial_percent: Annotated[
        float | None, typer.Option(help=f"First share, % ({_P.initial_percent:g}).")
    ] = None,
    step_factor: Annotated[
        float | None, typer.Option(help=f"Share multiplier per step ({_P.step_factor:g}).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help=f"Evaluation interval, s ({_P.evaluation_interval_s:g}).")
    ] = None,
    min_window: Annotated[
        float | None, typer.Option(help=f"Observation per step, s ({_P.min_window_s:g}).")
    ] = None,
    min_samples: Annotated[
        int | None, typer.Option(help=f"Requests needed to judge ({_P.min_samples}).")
    ] = None,
    min_success_rate: Annotated[
        float | None, typer.Option(help=f"Lowest success rate ({_P.min_success_rate:g}).")
    ] = None,
    max_latency_ratio: Annotated[
        float | None, typer.Option(help=f"Highest p95 ratio ({_P.max_latency_ratio:g}).")
    ] = None,
    max_empty_intervals: Annotated[
        int | None, typer.Option(help=f"Before on-no-data ({_P.max_empty_intervals}).")
    ] = None,
    on_no_data: Annotated[
        NoDataAction | None, typer.Option(help=f"HOLD or ABORT ({_P.on_no_data.value}).")
    ] = None,
    sticky: Annotated[bool | None, typer.Option(help="Each user keeps one version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deploy VERSION beside the model's current version and move traffic to it."""
    policy = given(
        initial_percent=initial_percent,
        step_factor=step_factor,
        evaluation_interval_s=interval,
        min_window_s=min_window,
        min_samples=min_samples,
        min_success_rate=min_success_rate,
        max_latency_ratio=max_latency_ratio,
        max_empty_intervals=max_empty_intervals,
        on_no_data=on_no_data,
        sticky=sticky,
    )  # fmt: skip  (left out: the platform's RolloutPolicy defaults)
    rollout = client().start_rollout(
        model, version, current_version=current_version, source=source, policy=policy
    )
    _show([rollout], as_json)


@rollout_app.command("list")
def list_rollouts(
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rollouts of your tenant, newest first."""
    _show(client().rollouts(model), as_json)


@rollout_app.command("status")
def status(rollout_id: str, as_json: JsonFlag = False) -> None:
    """One rollout: split, live figures, decisions."""
    rollout = client().rollout(rollout_id)
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
    sdk = client()
    rollout = sdk.rollout(rollout_id)
    with Live(view(rollout), console=console, refresh_per_second=4) as live:
        while rollout.status is RolloutStatus.IN_PROGRESS:
            time.sleep(every)
            rollout = sdk.rollout(rollout_id)
            live.update(view(rollout))
    if rollout.status is not RolloutStatus.COMPLETED:
        raise typer.Exit(1)


@rollout_app.command("promote")
def promote(rollout_id: str, as_json: JsonFlag = False) -> None:
    """Send all traffic to the new version now; the old one is retired."""
    _show([client().promote_rollout(rollout_id)], as_json)


@rollout_app.command("abort")
def abort(rollout_id: str, as_json: JsonFlag = False) -> None:
    """Send all traffic back to the current version; the new one is removed."""
    _show([client().abort_rollout(rollout_id)], as_json)
