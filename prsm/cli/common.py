"""What every ``prsm`` command group shares: the consoles, the ``--json`` flag, the client
for the configured gateway, and how options left at the server's default are left out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from prsm import bootstrap
from prsm.client import PrsmClient
from prsm.config import Settings

console = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def client(settings: Settings | None = None) -> PrsmClient:
    """The SDK client for this machine's gateway, with ``PRSM_TOKEN`` or a local token."""
    settings = settings or Settings()
    token = settings.token or bootstrap.issue_token(settings)
    return PrsmClient(settings.gateway_url, token)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (``None``: not given, so the server's default applies)."""
    return {name: value for name, value in options.items() if value is not None}


def print_json(rows: Sequence[BaseModel]) -> None:
    console.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
