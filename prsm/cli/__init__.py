"""The ``prsm`` command: bring the local platform up and down, issue tokens, submit and follow
tasks, deploy models, roll out versions, manage API keys. One module per command group;
what they share is in ``prsm.cli.common``."""

from __future__ import annotations

import sys

import httpx
import typer

from prsm.cli import cluster, platform, tasks
from prsm.cli.common import err
from prsm.cli.keys import keys_app
from prsm.cli.models import models_app
from prsm.cli.rollouts import rollout_app
from prsm.cli.skills import skills_app
from prsm.client import PrsmAPIError

app = typer.Typer(help="PRSM: AI work for scientific computing on Ray.", no_args_is_help=True)
for command in (platform.up, platform.down, platform.status, platform.token, tasks.submit,
                cluster.agents, cluster.cluster):  # fmt: skip
    app.command()(command)
app.add_typer(tasks.tasks_app, name="tasks")
app.add_typer(models_app, name="models")
app.add_typer(rollout_app, name="rollout")
app.add_typer(keys_app, name="keys")
app.add_typer(skills_app, name="skills")


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
