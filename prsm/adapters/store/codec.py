"""Events and their metadata to and from JSON, by event type name."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import TypeAdapter

from prsm.domain.event_types import EVENT_TYPES
from prsm.domain.events import Event, EventMetadata, NewEvent

_EVENTS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(cls) for name, cls in EVENT_TYPES.items()}
_METADATA: TypeAdapter[EventMetadata] = TypeAdapter(EventMetadata)


def encode(new: NewEvent) -> tuple[str, str, str, str]:
    """(event_id, type name, data JSON, metadata JSON) of an event about to be stored."""
    name = new.event.type_name()
    metadata = new.metadata
    if metadata.schema_version != type(new.event).schema_version:
        metadata = dataclasses.replace(metadata, schema_version=type(new.event).schema_version)
    return (
        metadata.event_id,
        name,
        _EVENTS[name].dump_json(new.event).decode(),
        _METADATA.dump_json(metadata).decode(),
    )


def event_json(event: Event) -> str:
    return _EVENTS[event.type_name()].dump_json(event).decode()


def decode_event(name: str, data: str | bytes) -> Event:
    adapter = _EVENTS.get(name)
    if adapter is None:
        raise ValueError(f"unknown event type {name!r}; known: {sorted(_EVENTS)}")
    event: Event = adapter.validate_json(data)
    return event


def decode_metadata(data: str | bytes) -> EventMetadata:
    return _METADATA.validate_json(data)
