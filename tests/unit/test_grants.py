"""The gateway's grants to model replicas: signed, bound to one version, short-lived."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from prsm.adapters.inference import grants

KEY = grants.grant_key(b"the platform secret")
# Valid for a month: however late after collection the test runs.
GRANT = grants.Grant(app="prsm-model-a", model="a", version="v1", tenant="lab",
                     caller_tenant="lab", in_rollout=True, request_id="r-1",
                     expires=time.time() + 30 * 86400)  # fmt: skip


def test_a_grant_verifies_for_its_version_and_says_what_the_gateway_decided() -> None:
    assert grants.verify(KEY, grants.mint(KEY, GRANT), "prsm-model-a") == GRANT


def test_the_grant_key_is_not_the_secret_and_depends_on_it() -> None:
    assert KEY != b"the platform secret"
    assert grants.grant_key(b"another secret") != KEY


@pytest.mark.parametrize(
    ("text", "app", "reason"),
    [
        (None, "prsm-model-a", "routed by the PRSM gateway"),
        ("", "prsm-model-a", "routed by the PRSM gateway"),
        ("e30.00ff", "prsm-model-a", "not valid"),  # "{}", a made-up signature
        ("no-dot-at-all", "prsm-model-a", "not valid"),
        (grants.mint(grants.grant_key(b"other"), GRANT), "prsm-model-a", "not valid"),
        (grants.mint(KEY, GRANT), "prsm-model-b", "another model version"),
        (grants.mint(KEY, replace(GRANT, expires=time.time() - 1)), "prsm-model-a", "expired"),
    ],
)
def test_a_replica_refuses_a_missing_forged_foreign_or_expired_grant(
    text: str | None, app: str, reason: str
) -> None:
    with pytest.raises(grants.GrantRefused, match=reason):
        grants.verify(KEY, text, app)


def test_a_grant_whose_payload_was_changed_is_refused() -> None:
    _, _, signature = grants.mint(KEY, GRANT).partition(".")
    other, _, _ = grants.mint(KEY, replace(GRANT, caller_tenant="intruder")).partition(".")
    with pytest.raises(grants.GrantRefused, match="not valid"):
        grants.verify(KEY, f"{other}.{signature}", "prsm-model-a")
