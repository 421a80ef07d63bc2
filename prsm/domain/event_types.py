"""Every event type, by name: what the event store can encode and decode."""

from __future__ import annotations

from prsm.domain import events as ev
from prsm.domain import registry_events as rev
from prsm.domain.skill_registry import SKILL_EVENTS

ALL_EVENTS: tuple[type[ev.Event], ...] = (
    *ev.TASK_EVENTS, *ev.RUN_EVENTS, *ev.AGENT_EVENTS, *rev.MODEL_EVENTS, *rev.ROLLOUT_EVENTS,
    ev.AccessDecided, ev.ApiKeyCreated, ev.ApiKeyRevoked, *SKILL_EVENTS,
)  # fmt: skip
EVENT_TYPES: dict[str, type[ev.Event]] = {cls.type_name(): cls for cls in ALL_EVENTS}
