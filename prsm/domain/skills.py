"""Skills as the platform knows them before running any: name, kind (``map``: one item → one
output; ``reduce``: the list of outputs → one value; ``llm``: a model call), the capability
an agent needs, the JSON Schemas of an input and an output, a timeout, and which code it is
(``code``: ``module:function``; ``version``; ``code_hash``).

Three origins, one shape:

- ``installed``: found through the ``prsm.skills`` entry points where the platform runs
  (PRSM's built-in skills are a package found this way);
- ``registered``: a version registered through ``/v1/skills`` by a tenant (or shared by an
  admin), with the ``runtime_env`` its code ships in;
- ``reference``: ``package.module:function`` named by a task that ships the code itself.

A ``SkillCatalog`` answers "which skill is this name"; a task records the skills it resolved
at submit (``Skill.record``), so that its run uses exactly that code.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import jsonschema

from prsm.domain.errors import InvalidRequest


class UnknownSkill(InvalidRequest):
    """No skill of that name (and kind) in the catalog."""


SkillKind = Literal["map", "reduce", "llm"]
Origin = Literal["installed", "registered", "reference"]

COMPUTE = "compute"
SIMULATION = "simulation"
LLM = "llm"
REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


@dataclass(frozen=True)
class Skill:
    name: str
    capability: str
    kind: SkillKind
    nominal_s: float = 0.01
    doc: str = ""
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    timeout_s: float | None = None  # None: the platform's default
    code: str = ""  # "module:function"
    version: str = ""
    code_hash: str = ""  # "sha256:…" of the code it runs
    origin: Origin = "installed"
    runtime_env: Mapping[str, Any] | None = None  # the code a registered skill ships in
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def ships_code(self) -> bool:
        """Its code is not installed where the platform runs: it runs on agents of the task's
        own, started with the code's ``runtime_env``."""
        return self.origin != "installed"

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Skill:
        return cls(**record)

    def check_input(self, item: Any, where: str) -> None:
        """A clear ``InvalidRequest`` naming ``where`` (``items[3]``) and the field if ``item``
        does not match the input schema."""
        if self.input_schema is not None:
            _check(self.input_schema, item, f"{self.name}: {where}")

    def output_error(self, output: Any) -> str | None:
        """Why ``output`` does not match the output schema, or ``None``."""
        if self.output_schema is None:
            return None
        try:
            _check(self.output_schema, output, f"{self.name} returned an output that")
        except InvalidRequest as exc:
            return exc.message
        return None


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema))


def _check(schema: Mapping[str, Any], value: Any, where: str) -> None:
    validator = _validator(json.dumps(schema, sort_keys=True))  # made once per schema
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidRequest(f"{where}{path}: {error.message[:300]}")


class SkillCatalog:
    """The skills a task may name: by name, or by ``module:function`` reference."""

    def __init__(self, skills: Iterable[Skill] = ()) -> None:
        self._by_name: dict[str, Skill] = {}
        self._by_code: dict[str, Skill] = {}
        for s in skills:
            self._by_name[s.name] = s
            if s.code and s.origin == "installed":
                self._by_code[s.code] = s

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def merged(self, more: Iterable[Skill]) -> SkillCatalog:
        """This catalog with ``more`` added (a name in both: ``more``'s)."""
        return SkillCatalog([*self._by_name.values(), *more])

    def find(self, name: object, kind: SkillKind | tuple[SkillKind, ...] = "map") -> Skill:
        """The skill ``name``, which must be of ``kind``, or a clear ``InvalidRequest``. A
        ``module:function`` reference to installed code is that skill; to code the task
        ships, a skill known by its reference alone."""
        kinds = (kind,) if isinstance(kind, str) else kind
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None and isinstance(name, str) and REFERENCE.match(name):
            found = self._by_code.get(name) or Skill(
                name, COMPUTE, "reduce" if kinds == ("reduce",) else "map", code=name,
                origin="reference",
            )  # fmt: skip
        if found is None or found.kind not in kinds:
            known = ", ".join(sorted(n for n, s in self._by_name.items() if s.kind in kinds))
            raise UnknownSkill(
                f"unknown {'/'.join(kinds)} skill {name!r}; known: {known}, or a reference "
                "'package.module:function' to code the task ships in its runtime_env"
            )
        return found
