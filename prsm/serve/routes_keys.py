"""``/v1/keys``: your API keys — create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from prsm.api.errors import error_responses
from prsm.api.keys import KeyCreate, KeyCreated, KeyList, KeyOut
from prsm.observability.logging import correlation_id
from prsm.serve.deps import Deps, KeyOwner
from prsm.service_layer.api_keys import create_key, list_keys, revoke_key

ERRORS = error_responses(401, 403, 404, 422)
router = APIRouter(prefix="/v1/keys", tags=["API keys"], responses=ERRORS)


def utc_now() -> datetime:
    return datetime.now(UTC)


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
