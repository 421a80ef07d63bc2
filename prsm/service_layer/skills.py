"""Skill registry use cases: register a version, retire one, and the registered skills a
principal may use (its tenant's and the shared ones, newest version under the plain name,
each version under ``name@version``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from prsm.domain import commands as cmds
from prsm.domain import runtime_env, streams
from prsm.domain.errors import InvalidRequest
from prsm.domain.identity import Principal
from prsm.domain.models import SHARED_TENANT
from prsm.domain.skill_registry import SkillRegistry
from prsm.domain.skills import Skill
from prsm.service_layer.ports import EventStore, Packages, StreamWrite
from prsm.service_layer.unit_of_work import Context, Writer, decide_and_append


async def load(store: EventStore, tenant_id: str) -> SkillRegistry:
    records = await store.read_stream(streams.skills(tenant_id))
    version = records[-1].version if records else 0
    return SkillRegistry.from_events(tenant_id, (r.event for r in records), version)


async def visible(store: EventStore, principal: Principal) -> list[Skill]:
    """The registered skills ``principal`` may run: shared first, its tenant's after (a name
    in both: the tenant's)."""
    out: list[Skill] = []
    for owner in dict.fromkeys((SHARED_TENANT, principal.tenant_id)):
        registry = await load(store, owner)
        out += [replace(s, name=f"{s.name}@{s.version}") for s in registry.live()]
        out += registry.newest().values()
    return out


async def registered(store: EventStore, principal: Principal) -> list[tuple[str, list[Skill]]]:
    """Every live version ``principal`` may see, by owner: shared, then its tenant's."""
    owners = dict.fromkeys((SHARED_TENANT, principal.tenant_id))
    return [(owner, (await load(store, owner)).live()) for owner in owners]


def check_packages(env: dict[str, Any], packages: Packages | None) -> None:
    for digest, name in runtime_env.check(env):
        if packages is None or not packages.exists(digest, "/" + name):
            raise InvalidRequest(f"package {digest}/{name} was not uploaded (POST /v1/packages)")


async def register_skill(cmd: cmds.RegisterSkill, ctx: Context) -> Skill:
    env = dict(cmd.skill.runtime_env or {})
    check_packages(env, ctx.packages)
    skill = replace(cmd.skill, runtime_env=env, code_hash=runtime_env.code_hash(env))
    owner = SHARED_TENANT if cmd.shared else cmd.principal.tenant_id
    at, installed = ctx.clock(), [s.name for s in ctx.skills]
    return await _change(Writer.of(cmd, ctx), owner,
                         lambda r: r.register(cmd.principal, skill, installed, at))  # fmt: skip


async def retire_skill(cmd: cmds.RetireSkill, ctx: Context) -> Skill:
    owner = SHARED_TENANT if cmd.shared else cmd.principal.tenant_id
    at = ctx.clock()
    return await _change(Writer.of(cmd, ctx), owner,
                         lambda r: r.retire(cmd.principal, cmd.name, cmd.version, at))  # fmt: skip


async def _change(writer: Writer, owner: str, decide: Callable[[SkillRegistry], Skill]) -> Skill:
    async def attempt() -> tuple[Skill, list[StreamWrite]]:
        registry = await load(writer.store, owner)
        result = decide(registry)
        if not registry.changes:
            return result, []
        events = writer.events(registry.changes)
        return result, [StreamWrite(streams.skills(owner), registry.version, events)]

    return await decide_and_append(writer.store, attempt)
