"""Bearer JWTs: HS256 with a secret generated on first start and kept in the data dir."""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from prsm.domain.errors import AuthenticationError
from prsm.domain.identity import Principal

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


def load_or_create_secret(path: Path) -> bytes:
    """Read the signing secret, creating it (mode 0600) if it does not exist yet. Two
    processes starting at once agree on one secret: creation is exclusive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not secret:
            raise AuthenticationError(f"the token secret file {path} is empty") from None
        return secret.encode()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class TokenCodec:
    secret: bytes
    issuer: str
    audience: str

    def issue(self, principal: Principal, now: datetime, ttl: timedelta) -> str:
        claims: dict[str, Any] = {
            "sub": principal.user_id,
            "tenant": principal.tenant_id,
            "roles": sorted(principal.roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        return self.decode(token)[0]

    def decode(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry (epoch seconds), or ``AuthenticationError``."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        tenant, roles = claims.get("tenant"), claims.get("roles", [])
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationError("invalid token: no tenant claim")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthenticationError("invalid token: roles must be a list of strings")
        principal = Principal(user_id=str(claims["sub"]), tenant_id=tenant, roles=frozenset(roles))
        return principal, float(claims["exp"])


class VerifiedTokens:
    """Tokens that passed verification, kept until they expire, so a client's repeated
    requests skip the signature check (~0.1 ms each). A token string is its own signed
    content: a hit is the same token, and expiry is checked again on every hit."""

    def __init__(self, codec: TokenCodec, size: int = 10_000) -> None:
        self._codec = codec
        self._size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        hit = self._entries.get(token)
        if hit is not None and time.time() < hit[1] + LEEWAY_SECONDS:
            return hit[0]
        principal, expires = self._codec.decode(token)
        self._entries[token] = (principal, expires)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return principal
