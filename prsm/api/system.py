"""``/v1/whoami``, ``/health`` and ``/ready`` on the wire."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WhoAmI(BaseModel):
    user_id: str
    tenant_id: str
    roles: list[str]
    scopes: list[str] = Field(description="What it may do: its roles' scopes, narrowed to its "
                              "credential's")  # fmt: skip


class Status(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
