"""Snapshots of the model registry to and from JSON. A rollout's history holds events of
several types, each stored with its type name as the event log stores them."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from prsm.adapters.store.codec import decode_event, event_json
from prsm.domain import registry_events as rev
from prsm.domain.model_registry import Deployment
from prsm.domain.registry_state import RegistryState
from prsm.domain.rollout_policy import RolloutStatus
from prsm.domain.rollouts import RolloutState

log = logging.getLogger("prsm.store")
_DEPLOYMENT: TypeAdapter[Deployment] = TypeAdapter(Deployment)
_DECLARED: TypeAdapter[rev.RolloutDeclared] = TypeAdapter(rev.RolloutDeclared)
_STARTED: TypeAdapter[rev.RolloutStarted] = TypeAdapter(rev.RolloutStarted)


SCHEMA = 1  # bump when what a snapshot holds changes: older ones are then passed over


def encode_state(state: RegistryState) -> str:
    return json.dumps({
        "schema": SCHEMA,
        "deployments": [_DEPLOYMENT.dump_python(d, mode="json") for d in state.deployments],
        "declared": [_DECLARED.dump_python(d, mode="json") for d in state.declared],
        "rollouts": [_rollout(r) for r in state.rollouts],
    })  # fmt: skip


def decode_state(version: int, text: str) -> RegistryState | None:
    """The state a snapshot holds; ``None`` (logged) for one this code cannot read, such as
    one of an older schema: the reader then loads the whole stream, and the next snapshot
    replaces it."""
    try:
        return _decoded(version, json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("passing over an unreadable model-registry snapshot", exc_info=True)
        return None


def _decoded(version: int, data: dict[str, Any]) -> RegistryState:
    if data.get("schema") != SCHEMA:
        raise ValueError(f"snapshot schema {data.get('schema')!r}, this code reads {SCHEMA}")
    return RegistryState(
        version=version,
        deployments=tuple(_DEPLOYMENT.validate_python(d) for d in data["deployments"]),
        rollouts=tuple(_rollout_state(r) for r in data["rollouts"]),
        declared=tuple(_DECLARED.validate_python(d) for d in data["declared"]),
    )


def _rollout(r: RolloutState) -> dict[str, Any]:
    return {
        "started": _STARTED.dump_python(r.started, mode="json"),
        "percent": r.percent,
        "status": r.status.value,
        "step_started_at": r.step_started_at.isoformat(),
        "last_evaluated_at": r.last_evaluated_at.isoformat(),
        "empty_intervals": r.empty_intervals,
        "history": [[e.type_name(), event_json(e)] for e in r.history],
    }


def _rollout_state(data: dict[str, Any]) -> RolloutState:
    history = tuple(_decision(name, text) for name, text in data["history"])
    return RolloutState(
        started=_STARTED.validate_python(data["started"]),
        percent=float(data["percent"]),
        status=RolloutStatus(data["status"]),
        step_started_at=datetime.fromisoformat(data["step_started_at"]),
        last_evaluated_at=datetime.fromisoformat(data["last_evaluated_at"]),
        empty_intervals=int(data["empty_intervals"]),
        history=history,
    )


def _decision(name: str, text: str) -> rev.RolloutEvent:
    event = decode_event(name, text)
    if not isinstance(event, rev.RolloutEvent):
        raise ValueError(f"a rollout's history holds {name}, not a rollout decision")
    return event
