"""API keys: random, shown once, stored as a SHA-256 of their secret, owned by a user and a
tenant, acting with their creator's roles narrowed to the key's scopes, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prsm.domain import events as ev
from prsm.domain.errors import AuthenticationError, InvalidRequest
from prsm.domain.identity import Principal
from prsm.domain.policy import Scope, granted

PREFIX = "prsm_"


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(raw: str) -> tuple[str, str]:
    """``prsm_<id>_<secret>`` → (id, secret); anything else is not a PRSM key."""
    if not raw.startswith(PREFIX):
        raise AuthenticationError("malformed API key")
    key_id, _, secret = raw[len(PREFIX) :].partition("_")
    if len(key_id) != 16 or not key_id.isalnum() or len(secret) < 32:
        raise AuthenticationError("malformed API key")
    return key_id, secret


@dataclass(frozen=True)
class ApiKey:
    created: ev.ApiKeyCreated
    revoked: ev.ApiKeyRevoked | None = None

    @property
    def key_id(self) -> str:
        return self.created.key_id

    def active(self, now: datetime) -> bool:
        expires = self.created.expires_at
        return self.revoked is None and (expires is None or now < expires)

    def principal(self, secret: str, now: datetime) -> Principal:
        if not hmac.compare_digest(_sha256(secret), self.created.secret_sha256):
            raise AuthenticationError("invalid API key")
        if self.revoked is not None:
            raise AuthenticationError("API key revoked")
        if not self.active(now):
            raise AuthenticationError("API key expired")
        c = self.created
        scopes = None if c.scopes is None else frozenset(c.scopes)
        return Principal(c.user_id, c.tenant_id, frozenset(c.roles), scopes, via=c.key_id)


def fold(events: Iterable[ev.Event]) -> dict[str, ApiKey]:
    keys: dict[str, ApiKey] = {}
    for e in events:
        if isinstance(e, ev.ApiKeyCreated):
            keys[e.key_id] = ApiKey(e)
        elif isinstance(e, ev.ApiKeyRevoked) and e.key_id in keys:
            keys[e.key_id] = ApiKey(keys[e.key_id].created, e)
    return keys


def new_key(
    owner: Principal,
    name: str,
    scopes: Iterable[str] | None,
    now: datetime,
    ttl: timedelta | None,
) -> tuple[str, ev.ApiKeyCreated]:
    """A fresh key (the only time its secret exists outside its holder) and its event. The
    key can do at most what its creator can: the scopes asked for must be granted to them."""
    if owner.via != "token":
        raise InvalidRequest("API keys are created with a token, not with another key")
    wanted = None if scopes is None else sorted(set(scopes))
    if wanted is not None:
        unknown = [s for s in wanted if s not in {x.value for x in Scope}]
        if unknown:
            raise InvalidRequest(f"unknown scopes: {', '.join(unknown)}")
        beyond = [s for s in wanted if Scope(s) not in granted(owner)]
        if beyond:
            raise InvalidRequest(f"scopes beyond your own: {', '.join(beyond)}")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    created = ev.ApiKeyCreated(
        key_id=key_id,
        tenant_id=owner.tenant_id,
        user_id=owner.user_id,
        name=name,
        roles=tuple(sorted(owner.roles)),
        scopes=None if wanted is None else tuple(wanted),
        secret_sha256=_sha256(secret),
        at=now,
        expires_at=None if ttl is None else now + ttl,
    )
    return f"{PREFIX}{key_id}_{secret}", created
