"""Canary rollouts: a new model version takes a growing share of its model's traffic while it
does as well as the current one, and is rolled back the moment it does not.

Pure: the rollout controller feeds ``evaluate`` the per-version figures of the last window and
the time; every decision is an event carrying those figures."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prsm.domain import registry_events as rev
from prsm.domain.errors import Conflict, InvalidRequest
from prsm.domain.rollout_policy import NoDataAction, RolloutPolicy, RolloutStatus, VersionStats


class Rollout:
    """One rollout of ``new_version`` of ``model`` over ``current_version``."""

    def __init__(self, started: rev.RolloutStarted) -> None:
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
        self.history: list[rev.RolloutEvent] = []  # every decision after the start, in order
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
