"""Who is asking: the principal every request and command acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """``scopes``: set when the credential (an API key, a token's ``scope`` claim) is narrower
    than the roles; ``None`` means whatever the roles grant. ``via`` says which credential:
    ``token`` or the API key's id."""

    user_id: str
    tenant_id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None
    via: str = "token"

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def can_see_task(principal: Principal, tenant_id: str, user_id: str) -> bool:
    """A task is visible to its owner and to the admins of its tenant, to nobody else."""
    if principal.tenant_id != tenant_id:
        return False
    return principal.is_admin or principal.user_id == user_id
