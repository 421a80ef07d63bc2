"""The names of the event store's streams: the one place that knows them.

task-<task id>         a task's life (submitted … succeeded / failed / cancelled)
run-<task id>          the subtasks of a task's run, as agents complete or fail them
agents                 the orchestrator's agent registry
model-registry         model deployments and canary rollouts
audit                  every authentication and authorisation decision
apikey-<key id>        one API key: created, revoked
apikeys-of-<digest>    the keys one user owns (digest of tenant and user)
skills-<tenant>        the skill versions a tenant registered (the shared tenant: everyone's)
"""

from __future__ import annotations

import hashlib

AGENTS = "agents"
MODEL_REGISTRY = "model-registry"
AUDIT = "audit"
_TASK = "task-"
_RUN = "run-"


def task(task_id: str) -> str:
    return f"{_TASK}{task_id}"


def task_id_of(stream_id: str) -> str:
    """The task a ``task-…`` stream belongs to."""
    return stream_id.removeprefix(_TASK)


def run(task_id: str) -> str:
    return f"{_RUN}{task_id}"


def api_key(key_id: str) -> str:
    return f"apikey-{key_id}"


def api_keys_of(tenant_id: str, user_id: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}/{user_id}".encode()).hexdigest()[:32]
    return f"apikeys-of-{digest}"


def skills(tenant_id: str) -> str:
    return f"skills-{tenant_id}"
