"""Skills on the wire: what ``/v1/skills`` takes and answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prsm.api.tasks import RuntimeEnvIn
from prsm.domain.skills import REFERENCE
from prsm.skill import NAME_PATTERN


class SkillResources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(default=None, ge=0, le=4096)
    gpu: float | None = Field(default=None, ge=0, le=512)
    memory_mb: int | None = Field(default=None, ge=0, le=64 * 1024 * 1024)


class SkillCreate(BaseModel):
    """A version of a skill whose code ships in ``runtime_env`` (uploaded packages)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN.pattern, max_length=100, examples=["sir.simulate"])
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$", examples=["1.0.0"])
    code: str = Field(pattern=REFERENCE.pattern, max_length=200,
                      description="The function: package.module:function")  # fmt: skip
    kind: Literal["map", "reduce"] = "map"
    capability: str = Field(default="compute", pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    input_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema")
    output_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema")
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    resources: SkillResources = Field(
        default_factory=lambda: SkillResources(),
        description="What one of its tasks needs when the task does not say",
    )
    doc: str = Field(default="", max_length=500)
    runtime_env: RuntimeEnvIn = Field(description="The code: packages, pip requirements")
    shared: bool = Field(default=False, description="For every tenant (admins only)")


class SkillOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    version: str
    kind: str
    capability: str
    origin: str = Field(description="installed (on the platform) or registered")
    code: str
    code_hash: str
    doc: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    timeout_s: float | None
    resources: dict[str, float]
    runtime_env: dict[str, Any] | None
    shared: bool = Field(description="Usable by every tenant")


class SkillList(BaseModel):
    skills: list[SkillOut]
