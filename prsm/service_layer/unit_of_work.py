"""The unit of work the command handlers share: who writes (``Context``, ``Writer``), the
metadata of what they write, and the two ways PRSM appends under optimistic concurrency:

- ``decide_and_append``: read the state, decide, append; when another writer got there first
  (``ConcurrencyError``), read and decide again, up to ``MAX_CONFLICT_RETRIES`` times.
- ``append_leaving_out_conflicts``: append many streams in one transaction; a stream that
  moved on is left out (its owner decides what that means: a replay, a reload) and the rest
  are appended again.

Every handler and follower appends through these two; none writes its own retry loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain.errors import ConcurrencyError
from prsm.domain.skills import SkillCatalog
from prsm.service_layer.ports import Clock, EventStore, Packages, StreamWrite

MAX_CONFLICT_RETRIES = 20  # decisions per command before the conflict goes to the caller

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """What every handler gets: the store, the clock and the component that writes; the
    skills installed where it runs, and the packages uploaded (``None``: none can be)."""

    store: EventStore
    clock: Clock
    source: str
    skills: SkillCatalog = field(default_factory=SkillCatalog)
    packages: Packages | None = None


@dataclass(frozen=True)
class Writer:
    """Who appends, and under which correlation and causation ids."""

    store: EventStore
    clock: Clock
    source: str
    correlation_id: str
    causation_id: str | None = None

    @classmethod
    def of(cls, cmd: cmds.Command, ctx: Context) -> Writer:
        return cls(ctx.store, ctx.clock, ctx.source, cmd.correlation_id, cmd.command_id)

    def metadata(self) -> ev.EventMetadata:
        return ev.EventMetadata(
            occurred_at=self.clock(),
            source=self.source,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
        )

    def events(self, changes: Sequence[ev.Event]) -> list[ev.NewEvent]:
        return [ev.NewEvent(e, self.metadata()) for e in changes]  # (an event id each)


async def decide_and_append(
    store: EventStore, decide: Callable[[], Awaitable[tuple[T, Sequence[StreamWrite]]]]
) -> T:
    """``decide`` reads what it needs and returns its result with the writes it implies
    (none: nothing to append). On a conflict it is called again on the newer state."""
    conflict: ConcurrencyError | None = None
    for _ in range(MAX_CONFLICT_RETRIES):
        result, writes = await decide()
        if not writes:
            return result
        try:
            await store.append(list(writes))
            return result
        except ConcurrencyError as exc:
            conflict = exc
    assert conflict is not None
    raise conflict


async def append_leaving_out_conflicts(
    store: EventStore,
    writes: dict[str, StreamWrite],
    on_conflict: Callable[[ConcurrencyError], Awaitable[None]],
) -> dict[str, StreamWrite]:
    """Append ``writes`` (keyed by stream id) in one transaction. A write whose stream moved
    on is left out after ``on_conflict`` has seen it (it may raise to stop everything); the
    others are appended again. Returns the writes that were appended."""
    pending = dict(writes)
    while pending:
        try:
            await store.append(list(pending.values()))
            return pending
        except ConcurrencyError as exc:
            pending.pop(exc.stream_id)
            await on_conflict(exc)
    return pending
