from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from prsm.domain.errors import AuthenticationError
from prsm.domain.identity import Principal
from prsm.security.tokens import PublicKeys, TokenCodec, VerifiedTokens, load_or_create_secret

CODEC = TokenCodec(b"s" * 32, issuer="prsm", audience="prsm")
NOW = datetime.now(UTC)
ALICE = Principal("alice", "acme", frozenset({"user"}))


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "alice", "tenant": "acme", "roles": ["user"], "iss": "prsm", "aud": "prsm",
        "nbf": int(NOW.timestamp()), "exp": int((NOW + timedelta(hours=1)).timestamp()),
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_token_round_trips_its_principal() -> None:
    assert CODEC.verify(CODEC.issue(ALICE, datetime.now(UTC), timedelta(minutes=5))) == ALICE


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode(claims(exp=int((NOW - timedelta(hours=1)).timestamp())), b"s" * 32), "expired"),
        (
            jwt.encode(claims(nbf=int((NOW + timedelta(hours=1)).timestamp())), b"s" * 32),
            "not yet valid",
        ),
        (jwt.encode(claims(iss="someone-else"), b"s" * 32), "issuer"),
        (jwt.encode(claims(aud="another-api"), b"s" * 32), "(?i)audience"),
        (jwt.encode(claims(), b"x" * 32), "(?i)signature"),
        (jwt.encode(claims(), None, algorithm="none"), "algorithm 'none' is not accepted"),
        (jwt.encode(claims(exp=None), b"s" * 32), "exp"),
        (jwt.encode(claims(tenant=None), b"s" * 32), "tenant"),
        (jwt.encode(claims(roles="admin"), b"s" * 32), "roles"),
        ("garbage", "malformed token"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(AuthenticationError, match=reason):
        CODEC.verify(token)


def test_small_clock_skew_is_tolerated() -> None:
    token = jwt.encode(claims(nbf=int((NOW + timedelta(seconds=10)).timestamp())), b"s" * 32)
    assert CODEC.verify(token).user_id == "alice"


def test_the_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "jwt_secret"
    first = load_or_create_secret(path)
    assert len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_verified_tokens_are_remembered_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[str] = []
    real_decode = TokenCodec.decode

    def counting(self: TokenCodec, token: str) -> tuple[Principal, float]:
        checks.append(token)
        return real_decode(self, token)

    monkeypatch.setattr(TokenCodec, "decode", counting)
    cache = VerifiedTokens(CODEC, size=2)
    token = CODEC.issue(ALICE, datetime.now(UTC), timedelta(minutes=5))  # now: not import time
    assert cache.verify(token) == ALICE
    assert cache.verify(token) == ALICE
    assert len(checks) == 1  # the second was a hit

    later = NOW.timestamp() + 3600  # past expiry: the entry no longer counts
    monkeypatch.setattr("prsm.security.tokens.time.time", lambda: later)
    cache.verify(token)
    assert len(checks) == 2
    for forged in ("garbage", token + "x"):
        with pytest.raises(AuthenticationError):
            cache.verify(forged)


# --- RS256: the identity provider's keys ---------------------------------------------------


def rsa_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def jwks(*keys: tuple[str, str]) -> str:
    import json

    from jwt.algorithms import RSAAlgorithm

    entries = []
    for kid, public in keys:
        entry = json.loads(
            RSAAlgorithm.to_jwk(RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(public))
        )
        entries.append(entry | {"kid": kid, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": entries})


def test_rs256_with_a_pem_public_key(tmp_path: Path) -> None:
    private, public = rsa_pair()
    (tmp_path / "idp.pem").write_text(public)
    codec = TokenCodec(None, "prsm", "prsm", PublicKeys(tmp_path / "idp.pem", jwks=False))
    token = jwt.encode(claims(scope="tasks:read inference"), private, algorithm="RS256")
    principal = codec.verify(token)
    assert (principal.user_id, principal.scopes) == (
        "alice",
        frozenset({"tasks:read", "inference"}),
    )
    with pytest.raises(AuthenticationError, match="'HS256' is not accepted"):
        codec.verify(jwt.encode(claims(), b"s" * 32))  # local tokens are off here
    other, _ = rsa_pair()
    with pytest.raises(AuthenticationError, match=r"(?i)signature"):
        codec.verify(jwt.encode(claims(), other, algorithm="RS256"))


def test_hs_rs_confusion_is_refused(tmp_path: Path) -> None:
    """A token signed with HMAC using the public key as the secret must not pass."""
    import hashlib
    import hmac
    import json
    from base64 import urlsafe_b64encode

    _, public = rsa_pair()
    (tmp_path / "idp.pem").write_text(public)
    codec = TokenCodec(b"s" * 32, "prsm", "prsm", PublicKeys(tmp_path / "idp.pem", jwks=False))

    def b64(data: bytes) -> str:
        return urlsafe_b64encode(data).rstrip(b"=").decode()

    for alg in ("HS256", "RS256"):
        head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        body = b64(json.dumps(claims()).encode())
        mac = hmac.new(public.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(AuthenticationError):
            codec.verify(f"{head}.{body}.{b64(mac)}")


def test_jwks_keys_rotate_by_kid_without_restart(tmp_path: Path) -> None:
    old_private, old_public = rsa_pair()
    new_private, new_public = rsa_pair()
    path = tmp_path / "jwks.json"
    path.write_text(jwks(("k1", old_public)))
    codec = TokenCodec(None, "prsm", "prsm", PublicKeys(path, jwks=True))
    assert codec.verify(jwt.encode(claims(), old_private, "RS256", headers={"kid": "k1"}))
    rotated = jwt.encode(claims(), new_private, "RS256", headers={"kid": "k2"})
    with pytest.raises(AuthenticationError, match="unknown signing key 'k2'"):
        codec.verify(rotated)
    import os

    path.write_text(jwks(("k1", old_public), ("k2", new_public)))
    stat_ = path.stat()
    os.utime(path, (stat_.st_atime, stat_.st_mtime + 5))
    assert codec.verify(rotated).user_id == "alice"
    with pytest.raises(AuthenticationError, match="kid"):
        codec.verify(jwt.encode(claims(), new_private, "RS256"))  # no kid named
    wrong_kid = jwt.encode(claims(), new_private, "RS256", headers={"kid": "k1"})
    with pytest.raises(AuthenticationError, match=r"(?i)signature"):
        codec.verify(wrong_kid)
