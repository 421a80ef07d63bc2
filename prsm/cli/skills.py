"""``prsm skills``: register, list, show and retire skills."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prsm.api.skills import SkillOut
from prsm.cli.common import JsonFlag, client, console, given, print_json

skills_app = typer.Typer(help="Skills: yours, your tenant's, shared and installed.",
                         no_args_is_help=True)  # fmt: skip


def _show(skills: list[SkillOut], as_json: bool) -> None:
    if as_json:
        print_json(skills)
        return
    table = Table("name", "version", "kind", "origin", "shared", "code", "code hash", "doc")
    for s in skills:
        table.add_row(s.name, s.version, s.kind, s.origin, "yes" if s.shared else "",
                      s.code, s.code_hash.removeprefix("sha256:")[:12], s.doc)  # fmt: skip
    console.print(table)


def _json(option: str, value: str | None) -> Any:
    """A JSON value given inline or as ``@file``."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{option} is not JSON: {exc}") from None


@skills_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Dotted name, e.g. sir.simulate.")],
    version: Annotated[str, typer.Argument(help="e.g. 1.0.0 (a version never changes).")],
    code: Annotated[str, typer.Argument(help="The function: package.module:function.")],
    runtime_env: Annotated[
        str,
        typer.Option(
            help='Its code, as JSON: \'{"pip": ["dist/x.whl"]}\' or \'{"working_dir": "./"}\' '
            "(local folders and wheels are uploaded)."
        ),
    ],
    kind: Annotated[str | None, typer.Option(help="map (default) or reduce.")] = None,
    capability: Annotated[str | None, typer.Option(help="What an agent needs.")] = None,
    input_schema: Annotated[str | None, typer.Option(help="JSON Schema (or @file).")] = None,
    output_schema: Annotated[str | None, typer.Option(help="JSON Schema (or @file).")] = None,
    timeout_s: Annotated[float | None, typer.Option(help="Per subtask.")] = None,
    cpu: Annotated[float | None, typer.Option(help="CPUs a task of it gets by default.")] = None,
    gpu: Annotated[float | None, typer.Option(help="GPUs a task of it gets by default.")] = None,
    memory_mb: Annotated[int | None, typer.Option(help="Memory (MiB), by default.")] = None,
    doc: Annotated[str | None, typer.Option(help="One line on what it does.")] = None,
    shared: Annotated[bool, typer.Option(help="For every tenant (admins).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register a version of a skill whose code ships with it."""
    fields = given(kind=kind, capability=capability, timeout_s=timeout_s, doc=doc,
                   input_schema=_json("--input-schema", input_schema),
                   output_schema=_json("--output-schema", output_schema),
                   resources=given(cpu=cpu, gpu=gpu, memory_mb=memory_mb) or None)  # fmt: skip
    env = _json("--runtime-env", runtime_env)
    skill = client().register_skill(name, version, code, env, shared=shared, **fields)
    _show([skill], as_json)


@skills_app.command("list")
def list_skills(as_json: JsonFlag = False) -> None:
    """The skills you may run."""
    _show(client().skills(), as_json)


@skills_app.command("show")
def show(name: str, as_json: JsonFlag = False) -> None:
    """The versions of one skill."""
    _show(client().skill(name), as_json)


@skills_app.command("retire")
def retire(
    name: str, version: str,
    shared: Annotated[bool, typer.Option(help="A shared skill (admins).")] = False,
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Retire a version: new tasks can no longer name it."""
    _show([client().retire_skill(name, version, shared)], as_json)
