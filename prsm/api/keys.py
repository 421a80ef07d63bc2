"""API keys on the wire: what ``/v1/keys`` takes and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.api_keys import ApiKey


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, examples=["nightly sweeps"])
    scopes: list[str] | None = Field(
        default=None,
        max_length=32,
        description="What the key may do, within your own scopes (default: all of them)",
        examples=[["tasks:write", "tasks:read"]],
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class KeyOut(BaseModel):
    id: str
    name: str
    user_id: str
    tenant_id: str
    roles: list[str]
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        c = key.created
        return cls(
            id=c.key_id, name=c.name, user_id=c.user_id, tenant_id=c.tenant_id,
            roles=list(c.roles), scopes=None if c.scopes is None else list(c.scopes),
            created_at=c.at, expires_at=c.expires_at,
            revoked_at=None if key.revoked is None else key.revoked.at,
        )  # fmt: skip


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown this once, store it now")


class KeyList(BaseModel):
    keys: list[KeyOut]
