"""Bearer JWTs: HS256 with a secret generated on first start and kept in the data dir, and
RS256 with an identity provider's public key or JWKS file."""

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


class PublicKeys:
    """RS256 verification keys from a PEM public key file (one key, any ``kid``) or a JWKS
    file (keys by ``kid``). The file is read again when a token names a ``kid`` it does not
    hold and the file changed since: keys rotate by editing the file, no restart."""

    def __init__(self, path: Path, jwks: bool) -> None:
        self._path, self._jwks = path, jwks
        self._mtime = -1.0
        self._keys: dict[str | None, Any] = {}
        self._load()

    def _load(self) -> None:
        mtime = self._path.stat().st_mtime
        text = self._path.read_text()
        if self._jwks:
            keyset = jwt.PyJWKSet.from_json(text)
            self._keys = {
                k.key_id: k.key for k in keyset.keys if k.algorithm_name in (None, "RS256")
            }
        else:
            self._keys = {
                None: jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(
                    text
                )
            }
        self._mtime = mtime

    def key_for(self, kid: object) -> Any:
        if not self._jwks:
            return self._keys[None]
        if not isinstance(kid, str):
            raise AuthenticationError("invalid token: RS256 tokens must name their key (kid)")
        if kid not in self._keys and self._path.stat().st_mtime != self._mtime:
            self._load()
        key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError(f"invalid token: unknown signing key {kid!r}")
        return key


@dataclass(frozen=True)
class TokenCodec:
    """Verifies HS256 tokens with the local secret (``secret``; ``None`` refuses them) and
    RS256 tokens with the identity provider's public keys (``public_keys``). The algorithm
    named in a token only chooses between the two; each is checked with its own key and
    that algorithm alone, so ``alg: none`` and HS/RS confusion are refused."""

    secret: bytes | None
    issuer: str
    audience: str
    public_keys: PublicKeys | None = None

    def issue(self, principal: Principal, now: datetime, ttl: timedelta) -> str:
        if self.secret is None:
            raise AuthenticationError("local tokens are disabled (PRSM_JWT_LOCAL_TOKENS=false)")
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
        if principal.scopes is not None:
            claims["scope"] = " ".join(sorted(principal.scopes))
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        return self.decode(token)[0]

    def _key(self, token: str) -> tuple[Any, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if alg == ALGORITHM and self.secret is not None:
            return self.secret, alg
        if alg == "RS256" and self.public_keys is not None:
            return self.public_keys.key_for(header.get("kid")), alg
        raise AuthenticationError(f"invalid token: algorithm {alg!r} is not accepted")

    def decode(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry (epoch seconds), or ``AuthenticationError``."""
        key, alg = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
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
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise AuthenticationError("invalid token: scope must be a space-separated string")
        principal = Principal(
            user_id=str(claims["sub"]),
            tenant_id=tenant,
            roles=frozenset(roles),
            scopes=None if scope is None else frozenset(scope.split()),
        )
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
