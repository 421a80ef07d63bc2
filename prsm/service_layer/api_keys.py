"""API key use cases: create (the secret is returned once), list one's own, revoke, and
authenticate a request's key — read from the store on every request, so a revoked key is
refused at once by every gateway replica."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.api_keys import ApiKey, fold, new_key, parse
from prsm.domain.errors import AuthenticationError, NotFound
from prsm.domain.identity import Principal
from prsm.service_layer.ports import Clock, EventStore, StreamWrite


def _new(event: ev.Event, at: datetime, correlation_id: str | None) -> ev.NewEvent:
    """The event as one stream's record (each stream gets its own event id)."""
    meta = ev.EventMetadata(
        occurred_at=at, source="gateway", correlation_id=correlation_id or str(uuid.uuid4())
    )
    return ev.NewEvent(event, meta)


async def create_key(
    store: EventStore,
    clock: Clock,
    owner: Principal,
    name: str,
    scopes: list[str] | None,
    ttl: timedelta | None,
    correlation_id: str | None = None,
) -> tuple[str, ApiKey]:
    now = clock()
    raw, created = new_key(owner, name, scopes, now, ttl)
    await store.append(
        [
            StreamWrite(streams.api_key(created.key_id), 0, [_new(created, now, correlation_id)]),
            StreamWrite(
                streams.api_keys_of(owner.tenant_id, owner.user_id),
                None,
                [_new(created, now, correlation_id)],
            ),
        ]
    )
    return raw, ApiKey(created)


async def list_keys(store: EventStore, owner: Principal) -> list[ApiKey]:
    records = await store.read_stream(streams.api_keys_of(owner.tenant_id, owner.user_id))
    return sorted(fold(r.event for r in records).values(), key=lambda k: k.created.at)


async def revoke_key(
    store: EventStore,
    clock: Clock,
    principal: Principal,
    key_id: str,
    correlation_id: str | None = None,
) -> ApiKey:
    """Revoke one's own key (admins: any key of their tenant); another's is 404."""
    records = await store.read_stream(streams.api_key(key_id))
    key = fold(r.event for r in records).get(key_id)
    mine = (
        key is not None
        and key.created.tenant_id == principal.tenant_id
        and (key.created.user_id == principal.user_id or principal.is_admin)
    )
    if key is None or not mine:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked is not None:
        return key
    now = clock()
    revoked = ev.ApiKeyRevoked(key_id=key_id, at=now, revoked_by=principal.user_id)
    owner = streams.api_keys_of(key.created.tenant_id, key.created.user_id)
    await store.append(
        [
            StreamWrite(
                streams.api_key(key_id), len(records), [_new(revoked, now, correlation_id)]
            ),
            StreamWrite(owner, None, [_new(revoked, now, correlation_id)]),
        ]
    )
    return ApiKey(key.created, revoked)


async def authenticate(store: EventStore, raw: str, now: datetime) -> Principal:
    key_id, secret = parse(raw)
    records = await store.read_stream(streams.api_key(key_id))
    key = fold(r.event for r in records).get(key_id)
    if key is None:
        raise AuthenticationError("invalid API key")
    return key.principal(secret, now)
