"""``/v1/keys``: your API keys — create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.api_keys import ApiKey
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, KeyOwner
from prsm.serve.schemas import ErrorResponse
from prsm.service_layer.api_keys import create_key, list_keys, revoke_key

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 422)
}
router = APIRouter(prefix="/v1/keys", tags=["API keys"], responses=ERRORS)


def utc_now() -> datetime:
    return datetime.now(UTC)


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


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
async def create(body: KeyCreate, principal: KeyOwner, deps: Deps) -> KeyCreated:
    ttl = None if body.expires_in_days is None else timedelta(days=body.expires_in_days)
    raw, key = await create_key(
        deps.store, utc_now, principal, body.name, body.scopes, ttl, correlation_id.get()
    )
    return KeyCreated(**KeyOut.of(key).model_dump(), key=raw)


@router.get("", response_model=KeyList, summary="Your API keys (never the keys themselves)")
async def list_mine(principal: KeyOwner, deps: Deps) -> KeyList:
    return KeyList(keys=[KeyOut.of(k) for k in await list_keys(deps.store, principal)])


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key, at once")
async def revoke(key_id: str, principal: KeyOwner, deps: Deps) -> KeyOut:
    key = await revoke_key(deps.store, utc_now, principal, key_id, correlation_id.get())
    return KeyOut.of(key)
