"""``/v1/skills``: the skills a caller may run — installed on the platform, shared, and its
tenant's own — and registering and retiring versions of its own (admins: shared ones)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from prsm.api.errors import error_responses
from prsm.api.skills import SkillCreate, SkillList, SkillOut
from prsm.domain import commands as cmds
from prsm.domain.errors import NotFound
from prsm.domain.models import SHARED_TENANT
from prsm.domain.skills import Skill
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, SkillsReader, SkillsWriter
from prsm.service_layer import skills

router = APIRouter(prefix="/v1/skills", tags=["skills"],
                   responses=error_responses(401, 403, 404, 409, 422))  # fmt: skip


def _out(s: Skill, shared: bool) -> SkillOut:
    return SkillOut.model_validate({**s.record(), "shared": shared})


@router.get("", response_model=SkillList, summary="The skills you may run")
async def list_skills(principal: SkillsReader, deps: Deps) -> SkillList:
    found = [_out(s, True) for s in sorted(deps.bus.skills, key=lambda s: s.name)]
    for owner, registered in await skills.registered(deps.store, principal):
        found += [_out(s, owner == SHARED_TENANT) for s in registered]
    return SkillList(skills=found)


@router.get("/{name}", response_model=SkillList, summary="A skill's versions")
async def get_skill(name: str, principal: SkillsReader, deps: Deps) -> SkillList:
    found = (await list_skills(principal, deps)).skills
    versions = [s for s in found if s.name == name]
    if not versions:
        raise NotFound(f"skill {name} not found")
    return SkillList(skills=versions)


@router.post("", status_code=201, response_model=SkillOut, summary="Register a version")
async def register(body: SkillCreate, principal: SkillsWriter, deps: Deps) -> SkillOut:
    skill = Skill(
        name=body.name, capability=body.capability, kind=body.kind, doc=body.doc,
        input_schema=body.input_schema, output_schema=body.output_schema,
        timeout_s=body.timeout_s, code=body.code, version=body.version,
        runtime_env=body.runtime_env.as_dict(),
        resources=body.resources.model_dump(exclude_none=True),
    )  # fmt: skip
    command = cmds.RegisterSkill(correlation_id=correlation_id.get(), principal=principal,
                                 skill=skill, shared=body.shared)  # fmt: skip
    return _out(await deps.bus.handle(command), body.shared)


@router.delete("/{name}/{version}", response_model=SkillOut, summary="Retire a version")
async def retire(
    name: str, version: str, principal: SkillsWriter, deps: Deps,
    shared: Annotated[bool, Query(description="A shared skill (admins)")] = False,
) -> SkillOut:  # fmt: skip
    command = cmds.RetireSkill(correlation_id=correlation_id.get(), principal=principal,
                               name=name, version=version, shared=shared)  # fmt: skip
    return _out(await deps.bus.handle(command), shared)
