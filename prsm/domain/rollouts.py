"""Canary rollouts: a new model version takes a growing share of its model's traffic while it
does as well as the current one, and is rolled back the moment it does not.

Pure: the rollout controller feeds ``evaluate`` the per-version figures of the last window and
the time; every decision is an event carrying those figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prsm.domain import registry_events as rev
from prsm.domain.errors import Conflict, InvalidRequest
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus, VersionStats

HELD_KEPT = 100  # holds a rollout's history keeps (the latest); every other decision stays


@dataclass(frozen=True)
class RolloutState:
    """A rollout as of its last event, what ``Rollout.restore`` rebuilds it from (a
    snapshot of the registry)."""

    started: rev.RolloutStarted
    percent: float
    status: RolloutStatus
    step_started_at: datetime
    last_evaluated_at: datetime
    empty_intervals: int
    history: tuple[rev.RolloutEvent, ...]


class Rollout:
    """One rollout of ``new_version`` of ``model`` over ``current_version``.

    ``history`` holds its decisions after the start, in order: every advance and ending, and
    the latest ``HELD_KEPT`` holds (a held rollout decides once per interval for as long as it
    is held; the stream keeps them all)."""

    def __init__(self, started: rev.RolloutStarted) -> None:
        self.started = started
        self.rollout_id = started.rollout_id
        self.tenant_id = started.tenant_id
        self.model = started.model
        self.current_version = started.current_version
        self.new_version = started.new_version
        self.policy = started.policy
        self.percent = started.policy.initial_percent
        self.status = RolloutStatus.IN_PROGRESS
        self.step_started_at = started.at
        self.last_evaluated_at = started.at
        self.empty_intervals = 0
        self.started_at = started.at
        self.started_by = started.started_by
        self.history: list[rev.RolloutEvent] = []
        self._holds = 0  # of them, holds
        self.changes: list[rev.RolloutEvent] = []

    # --- building ----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        rollout_id: str,
        tenant_id: str,
        model: str,
        current_version: str,
        new_version: str,
        policy: RolloutPolicy,
        at: datetime,
        started_by: str,
    ) -> Rollout:
        if current_version == new_version:
            raise InvalidRequest("the new version must differ from the current one")
        started = rev.RolloutStarted(
            rollout_id=rollout_id,
            tenant_id=tenant_id,
            model=model,
            at=at,
            current_version=current_version,
            new_version=new_version,
            policy=policy.validated(),
            started_by=started_by,
        )
        rollout = cls(started)
        rollout.changes.append(started)
        return rollout

    def state(self) -> RolloutState:
        return RolloutState(self.started, self.percent, self.status, self.step_started_at,
                            self.last_evaluated_at, self.empty_intervals,
                            tuple(self.history))  # fmt: skip

    @classmethod
    def restore(cls, state: RolloutState) -> Rollout:
        rollout = cls(state.started)
        rollout.percent, rollout.status = state.percent, state.status
        rollout.step_started_at, rollout.last_evaluated_at = (state.step_started_at,
                                                              state.last_evaluated_at)  # fmt: skip
        rollout.empty_intervals = state.empty_intervals
        rollout.history = list(state.history)
        rollout._holds = sum(isinstance(e, rev.RolloutHeld) for e in state.history)
        return rollout

    # --- queries -----------------------------------------------------------------------

    @property
    def weights(self) -> tuple[tuple[str, float], ...]:
        """The traffic split ``(version, share)`` the router applies now."""
        if self.status is RolloutStatus.COMPLETED:
            return ((self.new_version, 1.0),)
        if self.status is not RolloutStatus.IN_PROGRESS:
            return ((self.current_version, 1.0),)
        share = self.percent / 100
        return ((self.current_version, 1.0 - share), (self.new_version, share))

    @property
    def in_progress(self) -> bool:
        return self.status is RolloutStatus.IN_PROGRESS

    @property
    def retired_version(self) -> str | None:
        """The version a finished rollout leaves behind (to be removed)."""
        if self.status is RolloutStatus.COMPLETED:
            return self.current_version
        return None if self.in_progress else self.new_version

    def due(self, now: datetime) -> bool:
        interval = timedelta(seconds=self.policy.evaluation_interval_s)
        return self.status is RolloutStatus.IN_PROGRESS and now - self.last_evaluated_at >= interval

    # --- decisions ---------------------------------------------------------------------

    def evaluate(self, now: datetime, current: VersionStats, candidate: VersionStats) -> None:
        """Decide on the figures of the window that just ended (call when ``due``)."""
        self._require_in_progress()
        p = self.policy
        figures: dict[str, Any] = {"current": current.as_dict(), "candidate": candidate.as_dict()}
        if candidate.requests < p.min_samples:
            self._no_data(now, figures, self.new_version)
            return
        failures = self._failures(current, candidate)
        if failures:
            self._record(
                rev.RolloutRolledBack(
                    **self._ids(now), percent=0.0, reason="; ".join(failures), figures=figures
                )
            )
            return
        if current.requests < p.min_samples:  # no baseline to compare latency with
            self._no_data(now, figures, self.current_version)
            return
        window = timedelta(seconds=p.min_window_s)
        if now - self.step_started_at < window:
            self._record(
                rev.RolloutHeld(
                    **self._ids(now),
                    percent=self.percent,
                    reason="healthy; observation window not over",
                    figures=figures,
                )
            )
            return
        target = self.percent * p.step_factor
        if target >= 100:
            self._record(rev.RolloutCompleted(**self._ids(now), percent=100.0, figures=figures))
            return
        self._record(rev.RolloutAdvanced(**self._ids(now), percent=target, figures=figures))

    def wait(self, now: datetime, reason: str) -> None:
        """The new version is not serving yet: hold, and start the step's window again."""
        self._require_in_progress()
        self._record(
            rev.RolloutHeld(
                **self._ids(now), percent=self.percent, reason=reason, figures={}, waiting=True
            )
        )

    def promote(self, now: datetime, by: str) -> None:
        self._require_in_progress()
        self._record(
            rev.RolloutCompleted(**self._ids(now), percent=100.0, figures={"promoted_by": by})
        )

    def abort(self, now: datetime, by: str, reason: str = "aborted by user") -> None:
        self._require_in_progress()
        self._record(
            rev.RolloutAborted(**self._ids(now), percent=0.0, reason=f"{reason} ({by})", figures={})
        )

    def _failures(self, current: VersionStats, candidate: VersionStats) -> list[str]:
        p = self.policy
        failures = []
        if candidate.success_rate < p.min_success_rate:
            failures.append(
                f"success rate {candidate.success_rate:.3f} below {p.min_success_rate:.3f}"
            )
        if (
            current.p95_ms is not None
            and candidate.p95_ms is not None
            and current.requests >= p.min_samples
            and candidate.p95_ms > current.p95_ms * p.max_latency_ratio
        ):
            failures.append(
                f"p95 {candidate.p95_ms:.1f} ms above {p.max_latency_ratio:.2f} × "
                f"{current.p95_ms:.1f} ms of {self.current_version}"
            )
        return failures

    def _no_data(self, now: datetime, figures: dict[str, Any], version: str) -> None:
        empty = self.empty_intervals + 1
        reason = (
            f"fewer than {self.policy.min_samples} requests to {version} "
            f"({empty} interval(s) in a row)"
        )
        if (
            empty >= self.policy.max_empty_intervals
            and self.policy.on_no_data is NoDataAction.ABORT
        ):
            self._record(
                rev.RolloutAborted(
                    **self._ids(now), percent=0.0, reason=f"no data: {reason}", figures=figures
                )
            )
            return
        self._record(
            rev.RolloutHeld(
                **self._ids(now), percent=self.percent, reason=reason, figures=figures, no_data=True
            )
        )

    # --- state -------------------------------------------------------------------------

    def _ids(self, now: datetime) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "tenant_id": self.tenant_id,
            "model": self.model,
            "at": now,
        }

    def _require_in_progress(self) -> None:
        if self.status is not RolloutStatus.IN_PROGRESS:
            raise Conflict(f"rollout {self.rollout_id} is {self.status.value.lower()}")

    def _record(self, event: rev.RolloutEvent) -> None:
        self._apply(event)
        self.changes.append(event)

    def _apply(self, event: rev.RolloutEvent) -> None:
        self.last_evaluated_at = event.at
        self.history.append(event)
        if isinstance(event, rev.RolloutHeld):
            self._forget_old_holds()
            self.empty_intervals = self.empty_intervals + 1 if event.no_data else 0
            if event.waiting:
                self.step_started_at = event.at
            return
        self.empty_intervals = 0
        if isinstance(event, rev.RolloutAdvanced):
            self.percent, self.step_started_at = event.percent, event.at
        elif isinstance(event, rev.RolloutCompleted):
            self.percent, self.status = 100.0, RolloutStatus.COMPLETED
        elif isinstance(event, rev.RolloutRolledBack):
            self.percent, self.status = 0.0, RolloutStatus.ROLLED_BACK
        elif isinstance(event, rev.RolloutAborted):
            self.percent, self.status = 0.0, RolloutStatus.ABORTED

    def _forget_old_holds(self) -> None:
        self._holds += 1
        if self._holds > HELD_KEPT:  # the oldest hold sits after at most a few steps
            oldest = next(i for i, e in enumerate(self.history) if isinstance(e, rev.RolloutHeld))
            del self.history[oldest]
            self._holds -= 1
