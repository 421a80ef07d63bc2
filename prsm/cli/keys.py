"""``prsm keys``: create, list and revoke your API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from prsm.api.keys import KeyOut
from prsm.cli.common import JsonFlag, client, console, print_json

keys_app = typer.Typer(help="Your API keys.", no_args_is_help=True)


def _show(keys: list[KeyOut], as_json: bool) -> None:
    if as_json:
        print_json(keys)
        return
    table = Table("id", "name", "scopes", "created", "expires", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.name, " ".join(k.scopes) if k.scopes is not None else "(all of yours)",
            f"{k.created_at:%Y-%m-%d}", f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )  # fmt: skip
    console.print(table)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for.")],
    scope: Annotated[list[str] | None, typer.Option(help="Repeat; default: all yours.")] = None,
    days: Annotated[int | None, typer.Option(help="Expires after this many days.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key; it is printed this once — store it now."""
    created = client().create_key(name, scope or None, days)
    if as_json:
        console.print_json(created.model_dump_json())
        return
    _show([created], False)
    console.print(f"key (shown once): [bold]{created.key}[/bold]")


@keys_app.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """Your keys (never the keys themselves)."""
    _show(client().keys(), as_json)


@keys_app.command("revoke")
def revoke(key_id: str, as_json: JsonFlag = False) -> None:
    """Revoke a key; every gateway replica refuses it from now on."""
    _show([client().revoke_key(key_id)], as_json)
