"""Authorisation: roles map to scopes, every route names the one scope it needs, and the
policy decides — deny by default: no role, an unknown role, a scope nobody granted, or a
credential narrowed to other scopes are all refusals, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from prsm.domain.identity import Principal


class Scope(StrEnum):
    WHOAMI = "whoami"
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"  # submit, cancel
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"  # deploy, undeploy, faults
    INFERENCE = "inference"
    ROLLOUTS_READ = "rollouts:read"
    ROLLOUTS_WRITE = "rollouts:write"  # start, promote, abort
    KEYS = "keys"  # one's own API keys
    AUDIT_READ = "audit:read"
    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"  # drain an agent
    CLUSTER_READ = "cluster:read"
    SKILLS_READ = "skills:read"
    SKILLS_WRITE = "skills:write"  # register skills, upload code, submit tasks that ship it


_VIEWER = frozenset({Scope.WHOAMI, Scope.TASKS_READ, Scope.MODELS_READ, Scope.ROLLOUTS_READ,
                     Scope.AGENTS_READ, Scope.CLUSTER_READ, Scope.SKILLS_READ})  # fmt: skip
_USER = _VIEWER | {
    Scope.TASKS_WRITE, Scope.INFERENCE, Scope.MODELS_WRITE, Scope.ROLLOUTS_WRITE, Scope.KEYS,
}  # fmt: skip

ROLE_SCOPES: dict[str, frozenset[Scope]] = {
    "viewer": _VIEWER,
    "user": _USER,
    "operator": _USER | {Scope.AGENTS_WRITE, Scope.SKILLS_WRITE},
    "admin": frozenset(Scope),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def granted(principal: Principal) -> frozenset[Scope]:
    """The scopes the principal's roles grant, narrowed to its credential's scopes if any."""
    scopes: frozenset[Scope] = frozenset()
    for role in principal.roles:
        scopes |= ROLE_SCOPES.get(role, frozenset())
    if principal.scopes is not None:
        scopes = frozenset(s for s in scopes if s.value in principal.scopes)
    return scopes


def decide(principal: Principal, needed: Scope) -> Decision:
    if not principal.roles:
        return Decision(False, "the principal has no role")
    unknown = sorted(r for r in principal.roles if r not in ROLE_SCOPES)
    if needed in granted(principal):
        return Decision(True, f"scope {needed.value} granted")
    if principal.scopes is not None and needed not in principal.scopes:
        return Decision(False, f"the credential is limited to other scopes than {needed.value}")
    roles = ", ".join(sorted(principal.roles))
    extra = f" (unknown roles: {', '.join(unknown)})" if unknown else ""
    return Decision(False, f"role(s) {roles} lack scope {needed.value}{extra}")
