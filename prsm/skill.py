"""Declare your own functions as PRSM skills.

A skill is a plain Python function of one input (a ``map`` skill: one item → one output; a
``reduce`` skill: the list of outputs → one value). Mark it with :func:`skill` and name its
module in your package's entry points, group ``prsm.skills``::

    # sirmodel/core.py
    from prsm.skill import skill

    @skill("sir.simulate", capability="simulation", timeout_s=60,
           input_schema={"type": "object", "properties": {"beta": {"type": "number"}}},
           output_schema={"type": "object", "required": ["peak"]})
    def simulate(params: dict) -> dict: ...

    # pyproject.toml
    [project.entry-points."prsm.skills"]
    sirmodel = "sirmodel.core"

Installed where the platform runs, the package's skills are found by name (``sir.simulate``);
shipped with a task instead (``runtime_env``), the function is named by reference
(``"sirmodel.core:simulate"``) and the decorator's schemas and timeout still apply.

This module imports nothing of the platform: a skills package depends on it alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, TypeVar

SkillKind = Literal["map", "reduce", "llm"]
ENTRY_POINT_GROUP = "prsm.skills"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
ATTRIBUTE = "__prsm_skill__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SkillSpec:
    """What :func:`skill` records on a function."""

    name: str
    kind: SkillKind = "map"
    capability: str = "compute"
    input_schema: Mapping[str, Any] | None = None  # JSON Schema of one input
    output_schema: Mapping[str, Any] | None = None  # JSON Schema of one output
    resources: Mapping[str, float] = field(default_factory=dict)  # cpu, gpu, memory_mb: what
    # a task of it gets when the task does not say
    timeout_s: float | None = None  # None: the platform's default
    nominal_s: float = 0.01  # the duration an agent's speed is measured against
    doc: str = ""


def skill(
    name: str,
    *,
    kind: SkillKind = "map",
    capability: str = "compute",
    input_schema: Mapping[str, Any] | None = None,
    output_schema: Mapping[str, Any] | None = None,
    resources: Mapping[str, float] | None = None,
    timeout_s: float | None = None,
    nominal_s: float = 0.01,
) -> Callable[[F], F]:
    """Mark a function as the skill ``name`` (dotted, lower case: ``"sir.simulate"``); the
    function is returned unchanged, so it stays callable and testable as it is."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"a skill name is dotted lower case, like 'sir.simulate': {name!r}")
    if kind not in ("map", "reduce", "llm"):
        raise ValueError(f"kind must be map, reduce or llm, not {kind!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError("timeout_s must be positive")
    unknown = set(resources or {}) - {"cpu", "gpu", "memory_mb"}
    if unknown:
        raise ValueError(f"resources are cpu, gpu and memory_mb, not {sorted(unknown)}")

    def mark(fn: F) -> F:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        spec = SkillSpec(name, kind, capability, input_schema, output_schema,
                         dict(resources or {}), timeout_s, nominal_s, doc)  # fmt: skip
        setattr(fn, ATTRIBUTE, spec)
        return fn

    return mark


def spec_of(fn: object) -> SkillSpec | None:
    """The spec :func:`skill` put on ``fn``, if any."""
    found = getattr(fn, ATTRIBUTE, None)
    return found if isinstance(found, SkillSpec) else None


def skills_in(module: ModuleType) -> list[tuple[SkillSpec, Callable[..., Any]]]:
    """Every function of ``module`` marked with :func:`skill`, in name order."""
    found = [(s, fn) for fn in vars(module).values() if (s := spec_of(fn)) is not None]
    return sorted(found, key=lambda pair: pair[0].name)
