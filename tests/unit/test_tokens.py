from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from prsm.domain.errors import AuthenticationError
from prsm.domain.identity import Principal
from prsm.security.tokens import TokenCodec, VerifiedTokens, load_or_create_secret

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
        (jwt.encode(claims(), None, algorithm="none"), "alg value is not allowed"),
        (jwt.encode(claims(exp=None), b"s" * 32), "exp"),
        (jwt.encode(claims(tenant=None), b"s" * 32), "tenant"),
        (jwt.encode(claims(roles="admin"), b"s" * 32), "roles"),
        ("garbage", "invalid token"),
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
