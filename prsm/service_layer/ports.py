"""Ports: what the service layer needs from the outside, as Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prsm.domain.events import LoggedEvent, NewEvent, RecordedEvent
from prsm.domain.registry_state import RegistryState
from prsm.service_layer.views import TaskPage, TaskQuery, TaskView

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class StreamWrite:
    """Events to append to one stream. ``expected_version`` is the number of events the
    writer believes the stream holds (0: the stream must not exist); ``None`` skips the
    check."""

    stream_id: str
    expected_version: int | None
    events: Sequence[NewEvent]


@dataclass(frozen=True)
class LogPage:
    """What one ``read_log`` found: the events of the asked types among the positions it
    read, in position order, and where it stopped."""

    events: list[LoggedEvent]
    position: int  # the last position read: the next read starts after it
    more: bool  # the log went on past ``position`` when it was read


class EventStore(Protocol):
    async def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """Append all writes in one transaction, or none of them.

        Raises ``ConcurrencyError`` naming the first stream whose version moved on."""
        ...

    async def read_stream(self, stream_id: str, after: int = 0) -> list[RecordedEvent]:
        """The stream's events after version ``after``, in version order."""
        ...

    async def save_snapshot(self, stream_id: str, state: RegistryState) -> None:
        """Keep ``state`` as the stream's snapshot, unless one of a later version is kept."""
        ...

    async def load_snapshot(self, stream_id: str) -> RegistryState | None:
        """The stream's latest snapshot, if it has one."""
        ...

    async def read_log(self, after: int, types: Collection[str], span: int = 2000) -> LogPage:
        """Of the (at most ``span``) positions after ``after``, the events whose type name
        is in ``types``: how a follower reads only what it needs and still knows how far
        it has read."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot answer."""
        ...

    async def close(self) -> None: ...


class Packages(Protocol):
    """The result store, as submit sees it: whether a package was uploaded."""

    def exists(self, digest: str, suffix: str = "") -> bool: ...


class TaskViews(Protocol):
    async def catch_up(self) -> int:
        """Apply every task event recorded since the view's stored position, each exactly
        once, passing over events of other kinds; return how many were applied."""
        ...

    async def get(self, task_id: str) -> TaskView | None: ...

    async def list(self, query: TaskQuery) -> TaskPage: ...


Completion = dict[str, Any] | AsyncIterator[str]
"""A backend's answer: the OpenAI response body, or (``"stream": true``) an iterator of
server-sent-event text, each item one or more ``data: {json}\n\n`` events, the last
``data: [DONE]\n\n``."""


class InferenceBackend(Protocol):
    """One model version behind the OpenAI-compatible API: a vLLM deployment, or an external
    provider. Bodies are OpenAI request bodies; ``body["model"]`` is already the backend's own
    model name. Failures raise PRSM errors (``BadModelRequest``, ``RateLimited``,
    ``UpstreamAuthFailed``, ``UpstreamTimeout``, ``UpstreamError``), before the first
    streamed byte where the backend allows."""

    async def chat(self, body: dict[str, Any]) -> Completion: ...

    async def completions(self, body: dict[str, Any]) -> Completion: ...

    async def close(self) -> None: ...
