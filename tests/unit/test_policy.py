"""The policy engine: roles to scopes, deny by default, credentials narrowed by scopes."""

from __future__ import annotations

import pytest

from prsm.domain.identity import Principal
from prsm.domain.policy import ROLE_SCOPES, Decision, Scope, decide, granted


def who(*roles: str, scopes: frozenset[str] | None = None) -> Principal:
    return Principal("u", "t", frozenset(roles), scopes)


@pytest.mark.parametrize(
    ("roles", "scope", "allowed"),
    [
        (("viewer",), Scope.TASKS_READ, True),
        (("viewer",), Scope.TASKS_WRITE, False),
        (("viewer",), Scope.INFERENCE, False),
        (("user",), Scope.INFERENCE, True),
        (("user",), Scope.MODELS_WRITE, True),
        (("user",), Scope.AUDIT_READ, False),
        (("operator",), Scope.ROLLOUTS_WRITE, True),
        (("operator",), Scope.AUDIT_READ, False),
        (("admin",), Scope.AUDIT_READ, True),
        (("viewer", "user"), Scope.TASKS_WRITE, True),
    ],
)
def test_roles_map_to_scopes(roles: tuple[str, ...], scope: Scope, allowed: bool) -> None:
    assert decide(who(*roles), scope).allowed is allowed


def test_deny_by_default_with_a_reason() -> None:
    assert decide(who(), Scope.WHOAMI) == Decision(False, "the principal has no role")
    unknown = decide(who("superuser"), Scope.TASKS_READ)
    assert not unknown.allowed and "unknown roles: superuser" in unknown.reason
    assert "lack scope audit:read" in decide(who("user"), Scope.AUDIT_READ).reason


def test_a_credential_narrows_its_roles_but_never_widens_them() -> None:
    key = who("user", scopes=frozenset({"inference", "audit:read"}))
    assert granted(key) == {Scope.INFERENCE}
    assert decide(key, Scope.INFERENCE).allowed
    denied = decide(key, Scope.TASKS_READ)
    assert not denied.allowed and "limited to other scopes" in denied.reason
    assert not decide(key, Scope.AUDIT_READ).allowed  # in the key, not in the role


def test_every_scope_is_granted_to_some_role_and_admins_have_all() -> None:
    assert set().union(*ROLE_SCOPES.values()) == set(Scope)
    assert ROLE_SCOPES["admin"] == frozenset(Scope)
