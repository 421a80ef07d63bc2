"""Skill code: the skills installed where this process runs (the ``prsm.skills`` entry
points, PRSM's built-ins among them) and functions named by ``module:function``.

An entry point names a module (every function in it marked with ``prsm.skill.skill``) or one
marked function. One that does not load is left out and logged, so a broken package cannot
take the platform down. An installed skill's ``code_hash`` is the sha256 of its module's
source, its ``version`` its distribution's.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from prsm.domain.skills import Skill, SkillCatalog
from prsm.skill import ENTRY_POINT_GROUP, SkillSpec, skills_in, spec_of

log = logging.getLogger("prsm.skills")

Function = Callable[[Any], Any]


def as_skill(spec: SkillSpec, fn: Function, **which: Any) -> Skill:
    """The domain's view of a marked function (``which``: version, code_hash, origin…)."""
    return Skill(
        name=spec.name, capability=spec.capability, kind=spec.kind, nominal_s=spec.nominal_s,
        doc=spec.doc, input_schema=spec.input_schema, output_schema=spec.output_schema,
        timeout_s=spec.timeout_s, code=f"{fn.__module__}:{fn.__qualname__}",
        resources=dict(spec.resources), **which,
    )  # fmt: skip


def source_hash(module: ModuleType) -> str:
    try:
        source = inspect.getsource(module).encode()
    except (OSError, TypeError):  # no source file (e.g. a compiled module): its name
        source = module.__name__.encode()
    return "sha256:" + hashlib.sha256(source).hexdigest()


def _marked(ep: EntryPoint) -> list[tuple[SkillSpec, Function, ModuleType]]:
    loaded = ep.load()
    if isinstance(loaded, ModuleType):
        return [(spec, fn, loaded) for spec, fn in skills_in(loaded)]
    spec = spec_of(loaded)
    if spec is None:
        raise TypeError(f"{ep.value} is not marked with prsm.skill.skill")
    return [(spec, loaded, sys.modules[loaded.__module__])]


@functools.cache
def _installed() -> tuple[dict[str, Skill], dict[str, Function]]:
    skills: dict[str, Skill] = {}
    code: dict[str, Function] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            marked = _marked(ep)
        except Exception:
            log.exception("skills entry point %s = %s does not load: left out", ep.name, ep.value)
            continue
        version = ep.dist.version if ep.dist is not None else ""
        for spec, fn, module in marked:
            if spec.name in skills:
                log.error("skill %s is declared twice (%s): the first kept", spec.name, ep.value)
                continue
            skills[spec.name] = as_skill(spec, fn, version=version,
                                         code_hash=source_hash(module))  # fmt: skip
            code[spec.name] = fn
    return skills, code


def installed() -> SkillCatalog:
    """Every installed skill (found once per process)."""
    return SkillCatalog(_installed()[0].values())


def function(skill: Skill) -> Function:
    """The code of ``skill``: an installed one's function, or the one its reference names
    (imported here: from the ``runtime_env`` this process was started with)."""
    if skill.origin == "installed":
        return _installed()[1][skill.name]
    return load(skill.code)


def load(code: str) -> Function:
    """``module:function`` imported (``ModuleNotFoundError``, ``AttributeError`` as Python
    raises them)."""
    module_name, _, attribute = code.partition(":")
    fn: Function = getattr(importlib.import_module(module_name), attribute)
    return fn
