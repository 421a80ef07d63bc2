"""The skill registry: versions of skills that tenants register (their code shipped with a
``runtime_env``), and the shared ones admins register for everyone. One stream per owner
(``skills-<tenant>``; shared: the shared tenant's). A version is registered once and never
changed; retiring it takes it out of use (tasks that ran it keep their record of it).

A name resolves to its newest live version, or to ``name@version``; a tenant sees its own
skills and the shared ones — another tenant's are not there for it (not found).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import jsonschema

from prsm.domain import events as ev
from prsm.domain.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.models import SHARED_TENANT
from prsm.domain.skills import REFERENCE, Skill
from prsm.skill import NAME_PATTERN

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class SkillRegistered(ev.Event):
    tenant_id: str  # the owner (the shared tenant: everyone's)
    skill: dict[str, Any]  # a ``Skill.record()``
    by: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class SkillRetired(ev.Event):
    tenant_id: str
    name: str
    version: str
    by: str
    at: datetime


SKILL_EVENTS: tuple[type[ev.Event], ...] = (SkillRegistered, SkillRetired)


@dataclass
class SkillRegistry:
    """One owner's registered skills: name → version → skill, in registration order."""

    tenant_id: str
    versions: dict[str, dict[str, Skill]] = field(default_factory=dict)
    retired: set[tuple[str, str]] = field(default_factory=set)
    version: int = 0
    changes: list[ev.Event] = field(default_factory=list)

    @classmethod
    def from_events(
        cls, tenant_id: str, history: Iterable[ev.Event], version: int
    ) -> SkillRegistry:
        registry = cls(tenant_id, version=version)
        for e in history:
            registry._apply(e)
        return registry

    def _apply(self, e: ev.Event) -> None:
        if isinstance(e, SkillRegistered):
            s = Skill.from_record(e.skill)
            self.versions.setdefault(s.name, {})[s.version] = s
        elif isinstance(e, SkillRetired):
            self.retired.add((e.name, e.version))

    def _record(self, e: ev.Event) -> None:
        self._apply(e)
        self.changes.append(e)

    def live(self) -> list[Skill]:
        return [s for versions in self.versions.values() for s in versions.values()
                if (s.name, s.version) not in self.retired]  # fmt: skip

    def newest(self) -> dict[str, Skill]:
        """Each name's newest live version."""
        out: dict[str, Skill] = {}
        for s in self.live():
            out[s.name] = s  # registration order: a later version wins
        return out

    def find(self, name: str, version: str) -> Skill:
        found = self.versions.get(name, {}).get(version)
        if found is None:
            raise NotFound(f"skill {name}@{version} not found")
        return found

    # --- decisions -------------------------------------------------------------------------

    def register(
        self, who: Principal, skill: Skill, installed: Iterable[str], at: datetime
    ) -> Skill:
        _may_change(who, self.tenant_id)
        if not NAME_PATTERN.match(skill.name):
            raise InvalidRequest(f"a skill name is dotted lower case, like 'sir.simulate': "
                                 f"{skill.name!r}")  # fmt: skip
        if not VERSION.match(skill.version):
            raise InvalidRequest("a version is 1 to 64 letters, digits and ._+-")
        if not REFERENCE.match(skill.code):
            raise InvalidRequest("code must name a function: 'package.module:function'")
        for schema in (skill.input_schema, skill.output_schema):
            if schema is not None:
                try:
                    jsonschema.Draft202012Validator.check_schema(schema)
                except jsonschema.SchemaError as exc:
                    raise InvalidRequest(f"not a JSON Schema: {exc.message[:300]}") from None
        if skill.name in set(installed):
            raise Conflict(f"{skill.name} is an installed skill: register another name")
        if skill.version in self.versions.get(skill.name, {}):
            raise Conflict(f"{skill.name}@{skill.version} is registered already: versions do "
                           "not change, register a new one")  # fmt: skip
        pinned = replace(skill, origin="registered")
        self._record(SkillRegistered(tenant_id=self.tenant_id, skill=pinned.record(),
                                     by=who.user_id, at=at))  # fmt: skip
        return pinned

    def retire(self, who: Principal, name: str, version: str, at: datetime) -> Skill:
        _may_change(who, self.tenant_id)
        skill = self.find(name, version)
        if (name, version) not in self.retired:
            self._record(SkillRetired(tenant_id=self.tenant_id, name=name, version=version,
                                      by=who.user_id, at=at))  # fmt: skip
        return skill


def _may_change(who: Principal, owner: str) -> None:
    if owner == SHARED_TENANT and "admin" not in who.roles:
        raise PermissionDenied("only admins register or retire shared skills")
    if owner not in (SHARED_TENANT, who.tenant_id):
        raise NotFound("no such skill")


def split(name: str) -> tuple[str, str | None]:
    """``name@version`` → (name, version); a plain name → (name, None)."""
    base, _, version = name.partition("@")
    return base, version or None
